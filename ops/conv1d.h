// ops/conv1d.h: causal depthwise 1-D convolution (Mamba's short conv, and the direct path of the
// global-selection long conv), with optional bias and fused SiLU; plus its one-token step.
//
// Shapes: x (B, L, D) channels-last (token-major: D is contiguous), weight (D, K), bias (D) or
// undefined (no bias); y (B, L, D). The model stores the weight (D, 1, K) like PyTorch's
// depthwise Conv1d; the nn layer reshapes it to (D, K).
//
//   pre[b,t,d] = bias[d] + sum_{k=0}^{K-1} w[d,k] x[b, t-(K-1)+k, d]     (x at t < 0 is 0)
//   y = silu(pre) if silu, else pre
//
// Orientation: this is PyTorch's F.conv1d(x^T, w[:,None,:], bias, padding=K-1, groups=D)[..., :L]
// (conv1d is a cross-correlation: out[t] = sum_k w[k] xpad[t+k], xpad having K-1 zeros in
// front), so w[d, K-1] multiplies the current token x[t] and w[d, 0] the oldest, x[t-(K-1)].
// A Mamba checkpoint's conv1d.weight[d, 0, :] is used as is.
//
// Derivatives (g = dL/dy; s = sigmoid(pre)):
//   gp[b,t,d] = g * s (1 + pre (1 - s))   with silu (pre is recomputed in backward, not saved)
//             = g                         without
//   dx[b,s,d] = sum_k w[d,k] gp[b, s+(K-1)-k, d]       (gp at s >= L is 0: a correlation with
//                                                       the flipped kernel)
//   dw[d,k]   = sum_{b,t} gp[b,t,d] x[b, t-(K-1)+k, d]
//   dbias[d]  = sum_{b,t} gp[b,t,d]
// dw and dbias are reduced deterministically on both devices (fixed order, no float atomics).
#pragma once
#include <cstdint>

#include "common/conv1d.h"
#include "tensor/tensor.h"

namespace mg {

// y = [silu](causal depthwise conv(x, weight) + bias). Any K >= 1 (K > L is allowed: the taps
// older than the sequence see zeros).
Tensor causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), bool silu = false);

// One generation step. conv_state (B, D, K-1) holds the last K-1 inputs of each channel, oldest
// first (conv_state[b,d,K-2] is the previous token); it is updated in place (shifted left, x_t
// appended), so it must be contiguous. x_t (B, D). Returns y_t (B, D), equal to the parallel
// forward's output at the next position. Generation only: no autograd graph is recorded.
Tensor causal_conv1d_update(const Tensor& conv_state, const Tensor& x_t, const Tensor& weight,
                            const Tensor& bias = Tensor(), bool silu = false);

// Argument checks shared by every causal conv op (conv1d, fft_conv, causal_conv): x (B,L,D) float,
// weight (D,K) with K >= 1, bias (D) or undefined; all on one device with one dtype.
void check_causal_conv_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- kernels (contiguous inputs; bias may be null = no bias) ----------------------------------
// y (B,L,D) = [silu](conv(x, w) + bias). Writes (=).
template <typename T>
void causal_conv1d_forward_cpu(T* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L,
                               int64_t D, int64_t K, bool silu);
// dx (B,L,D), dweight (D,K), dbias (D; null when there is no bias) from dy (B,L,D); the formulas
// above. Writes (=).
template <typename T>
void causal_conv1d_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                                const T* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu);
// One step: y_t (B,D) from conv_state (B,D,K-1) and x_t (B,D); updates conv_state (in/out).
template <typename T>
void causal_conv1d_update_cpu(T* y, T* conv_state, const T* x, const T* weight, const T* bias, int64_t B,
                              int64_t D, int64_t K, bool silu);

// The references: the formulas above as the most obvious loops, in double. Write (=).
template <typename T>
void causal_conv1d_ref(double* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L,
                       int64_t D, int64_t K, bool silu);
template <typename T>
void causal_conv1d_backward_ref(double* dx, double* dweight, double* dbias, const T* dy, const T* x,
                                const T* weight, const T* bias, int64_t B, int64_t L, int64_t D, int64_t K,
                                bool silu);

} // namespace mg
