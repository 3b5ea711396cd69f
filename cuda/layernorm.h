// cuda/layernorm.h: CUDA launchers for ops/layernorm.h (same arguments as the CPU kernels; rows
// contiguous, N rows of D).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mg::cuda {

// out = xh w + b (bias may be null), mean[n] = mu_n, rstd[n] = r_n. Writes (=).
template <typename T>
void layer_norm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t N, int64_t D,
                        double eps);

// Bytes of scratch layer_norm_backward needs (the dweight and dbias partials).
size_t layer_norm_backward_workspace(int64_t N, int64_t D, size_t elem_size);

// dx, dweight and dbias (either may be null). Writes (=). `workspace` has at least
// layer_norm_backward_workspace(N, D, sizeof(T)) bytes.
template <typename T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const T* mean,
                         const T* rstd, void* workspace, int64_t N, int64_t D);

} // namespace mg::cuda
