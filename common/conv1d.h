// common/conv1d.h: the causal conv's per-element math, compiled for the CPU kernels
// (ops/conv1d.cpp, ops/fft_conv.cpp) and the CUDA kernels (cuda/conv1d.cu, cuda/fft_conv*.cu*):
// the fused SiLU epilogue, its derivative, and one channel's generation step.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "tensor/indexing.h"

namespace mg {

// SiLU for the fused epilogues: the activations' own math (common/activation.h).
template <typename T> MG_HD T conv_silu(T v) { return activation_apply(Activation::silu, v); }
// d silu(v) / dv = s (1 + v (1 - s)), s = sigmoid(v).
template <typename T> MG_HD T conv_dsilu(T v) { return activation_grad(Activation::silu, T(1), v); }

// One channel's generation step, the body of both devices' step kernels: y = [silu](bias + sum_{k<K-1}
// w[k] state[k] + w[K-1] x), taps summed oldest first as in the parallel forward; then state
// (K-1 values, oldest first) shifts left by one and takes x as its newest entry.
template <typename T> MG_HD T conv_step_channel(T* state, T x, const T* w, T bias, int64_t K, bool silu) {
    T acc = T(0);
    for (int64_t k = 0; k < K - 1; ++k) acc += w[k] * state[k];
    acc += w[K - 1] * x;
    for (int64_t k = 0; k + 1 < K - 1; ++k) state[k] = state[k + 1];
    if (K > 1) state[K - 2] = x;
    T v = acc + bias;
    return silu ? conv_silu(v) : v;
}

} // namespace mg
