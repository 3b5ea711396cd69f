// cuda/rmsnorm.h: CUDA launchers for ops/rmsnorm.h (same arguments as the CPU kernels; rows
// contiguous, N rows of D).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mg::cuda {

// h = x + residual (residual may be null), written to h_out when non-null; out = h r w;
// rstd[n] = r_n. Writes (=).
template <typename T>
void rmsnorm_forward(T* out, T* h_out, T* rstd, const T* x, const T* residual, const T* weight, int64_t N, int64_t D,
                     double eps);

// Bytes of scratch rmsnorm_backward needs (the dweight partials).
size_t rmsnorm_backward_workspace(int64_t N, int64_t D, size_t elem_size);

// dx (+ dh when non-null) and dweight (may be null). Writes (=). `workspace` has at least
// rmsnorm_backward_workspace(N, D, sizeof(T)) bytes.
template <typename T>
void rmsnorm_backward(T* dx, T* dweight, const T* dout, const T* dh, const T* h, const T* weight, const T* rstd,
                      void* workspace, int64_t N, int64_t D);

} // namespace mg::cuda
