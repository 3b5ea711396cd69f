// ops/layernorm.h: LayerNorm over the last dim (GPT-NeoX / PyTorch semantics).
//
// Shapes: x (..., D) read as N = numel / D rows (N = B*L for (B, L, D)); weight (D); bias (D) or
// undefined (no bias, b = 0).
//   mu_n   = (1/D) sum_j x_nj                          (mean, saved by the forward)
//   var_n  = (1/D) sum_j (x_nj - mu_n)^2               (biased, as PyTorch)
//   r_n    = 1 / sqrt(var_n + eps)                     (rstd, saved by the forward)
//   xh_nj  = (x_nj - mu_n) r_n
//   y_nj   = xh_nj w_j + b_j
//
// Derivatives (g = dL/dy, gw_nj = g_nj w_j, a_n = (1/D) sum_k gw_nk, c_n = (1/D) sum_k gw_nk xh_nk):
//   dx_nj = r_n (gw_nj - a_n - xh_nj c_n)
//   dw_j  = sum_n g_nj xh_nj             (over all rows, in a fixed order on both devices)
//   db_j  = sum_n g_nj                   (likewise)
// (From dxh_nj = gw_nj and d xh_nk / d x_nj = r_n (delta_jk - 1/D - xh_nj xh_nk / D).)
//
// Kernels: a team of threads per row on CUDA (one warp up to D = 1024, up to 256 threads past
// it; cuda/row_team.cuh) with fixed-order butterfly sums; dweight and dbias as per-block
// partials over fixed row groups, then a second pass that sums the groups in order
// (deterministic, no atomics). The CPU accumulates in double.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mg {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// ---- kernels (rows contiguous: (N, D)) -------------------------------------------------------
// out = xh w + b (bias may be null: b = 0), mean[n] = mu_n, rstd[n] = r_n. Writes (=).
template <typename T>
void layer_norm_forward_cpu(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t N,
                            int64_t D, double eps);
// dx, dweight = sum_n dout_n xh_n, dbias = sum_n dout_n, with xh from the saved mean and rstd.
// Writes (=) all three; dweight and dbias may be null (not needed).
template <typename T>
void layer_norm_backward_cpu(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const T* mean,
                             const T* rstd, int64_t N, int64_t D);

// References in double: the formulas above as plain loops (bias may be null).
template <typename T>
void layer_norm_ref(double* out, const T* x, const T* weight, const T* bias, int64_t N, int64_t D, double eps);
template <typename T>
void layer_norm_backward_ref(double* dx, double* dweight, double* dbias, const T* dout, const T* x, const T* weight,
                             int64_t N, int64_t D, double eps);

} // namespace mg
