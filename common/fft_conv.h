// common/fft_conv.h: the FFT convolution's transform length, shared by the CPU kernels
// (ops/fft_conv.cpp) and the CUDA kernels (cuda/fft_conv.cu).
#pragma once
#include <cstdint>

namespace mg {

// The FFT length: the smallest power of two >= max(2, L + K - 1), so the circular convolution of
// length n equals the linear (causal) one on the L outputs kept.
inline int64_t fft_conv_size(int64_t L, int64_t K) {
    int64_t need = L + K - 1 > 2 ? L + K - 1 : 2, n = 1;
    while (n < need) n <<= 1;
    return n;
}

} // namespace mg
