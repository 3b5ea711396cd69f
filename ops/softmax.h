// ops/softmax.h: softmax over the last dim, numerically stable.
//
// Shapes: x (..., D) read as N = numel / D rows (N = B*L for (B, L, D)) -> y (..., D).
//   m_n   = max_j x_nj
//   s_n   = sum_j exp(x_nj - m_n)
//   y_nj  = exp(x_nj - m_n) / s_n                      (y saved by the forward)
// Every exponent is <= 0, so no |x| overflows (x = 1000 is fine); s_n >= 1 (the max's own term).
// A -inf entry gets y = 0. A row that is all -inf (fully masked) gives y = 0 everywhere, not
// PyTorch's NaN, so a fully masked row cannot poison training; its gradient is 0 too. A NaN or
// +inf in a row makes the row NaN.
//
// Derivative (g = dL/dy):
//   dx_nj = y_nj (g_nj - sum_k g_nk y_nk)
// (From dy_nk / dx_nj = y_nk (delta_jk - y_nj).)
//
// Kernels: a team of threads per row on CUDA (one warp up to D = 1024, up to 256 threads past
// it; cuda/row_team.cuh): the max, then the sum, each combined in a fixed order (deterministic).
// The CPU accumulates in double.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mg {

Tensor softmax(const Tensor& x);

// ---- kernels (rows contiguous: (N, D)) -------------------------------------------------------
// out = softmax of each row of x. Writes (=).
template <typename T> void softmax_forward_cpu(T* out, const T* x, int64_t N, int64_t D);
// dx = y (dout - sum_k dout_k y_k) per row, from the forward's output y. Writes (=).
template <typename T> void softmax_backward_cpu(T* dx, const T* dout, const T* y, int64_t N, int64_t D);

// References in double: the formulas above as plain loops (the backward recomputes y from x).
template <typename T> void softmax_ref(double* out, const T* x, int64_t N, int64_t D);
template <typename T> void softmax_backward_ref(double* dx, const T* dout, const T* x, int64_t N, int64_t D);

} // namespace mg
