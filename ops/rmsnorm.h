// ops/rmsnorm.h: RMSNorm, and the fused residual-add + RMSNorm of mamba_ssm's blocks.
//
// Shapes: x (..., D) read as N = numel / D rows (N = B*L for (B, L, D)); weight (D).
//   r_n  = 1 / sqrt(mean_j x_nj^2 + eps)            (rstd, saved by the forward)
//   y_nj = x_nj r_n w_j
//
// rmsnorm_residual(x, residual, weight, eps) is mamba_ssm's fused add-norm ("Add -> Norm"):
//   h = x + residual (h = x when residual is undefined);  returns {rmsnorm(h), h}
// h is the residual stream handed to the next block. mamba keeps it in fp32 whatever the
// activations' dtype; here every tensor shares x's dtype, so an f32 model keeps it in f32
// (and f64 in f64). x and residual must have the same shape.
//
// Derivatives (g = dL/dy, S_n = sum_k g_nk w_k x_nk):
//   dx_nj = r_n w_j g_nj - x_nj r_n^3 S_n / D
//   dw_j  = sum_n g_nj x_nj r_n          (over all rows, in a fixed order on both devices)
// Residual form, with gh = dL/dh from h's own consumers:  dx = dresidual = (dx above at h) + gh.
//
// Kernels: one warp per row on CUDA (a team of up to 256 threads past D = 1024) with a
// fixed-order butterfly reduction; dweight as per-block
// partials over fixed row groups, then a second pass that sums the groups in order
// (deterministic, no atomics). The CPU accumulates in double.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mg {

Tensor rmsnorm(const Tensor& x, const Tensor& weight, double eps = 1e-5);

struct RmsNormResidual {
    Tensor normed;   // rmsnorm(h), (..., D)
    Tensor residual; // h = x + residual, (..., D)
};
RmsNormResidual rmsnorm_residual(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps = 1e-5);

// ---- kernels (rows contiguous: (N, D)) -------------------------------------------------------
// h = x + residual (residual may be null: h = x), written to h_out when non-null; out = h r w and
// rstd[n] = r_n. Writes (=).
template <typename T>
void rmsnorm_forward_cpu(T* out, T* h_out, T* rstd, const T* x, const T* residual, const T* weight, int64_t N,
                         int64_t D, double eps);
// dx = d(out)/dh^T dout (+ dh when non-null), dweight = sum_n dout_n h_n r_n. Writes (=) both;
// dweight may be null (not needed).
template <typename T>
void rmsnorm_backward_cpu(T* dx, T* dweight, const T* dout, const T* dh, const T* h, const T* weight, const T* rstd,
                          int64_t N, int64_t D);

// References in double: the formulas above as plain loops.
template <typename T>
void rmsnorm_ref(double* out, const T* x, const T* weight, int64_t N, int64_t D, double eps);
template <typename T>
void rmsnorm_backward_ref(double* dx, double* dweight, const T* dout, const T* x, const T* weight, int64_t N,
                          int64_t D, double eps);

} // namespace mg
