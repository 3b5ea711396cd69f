// cuda/softmax.h: CUDA launchers for ops/softmax.h (same arguments as the CPU kernels; rows
// contiguous, N rows of D).
#pragma once
#include <cstdint>

namespace mg::cuda {

// out = softmax of each row of x (a fully -inf row gives zeros). Writes (=).
template <typename T> void softmax_forward(T* out, const T* x, int64_t N, int64_t D);

// dx = y (dout - sum_k dout_k y_k) per row. Writes (=).
template <typename T> void softmax_backward(T* dx, const T* dout, const T* y, int64_t N, int64_t D);

} // namespace mg::cuda
