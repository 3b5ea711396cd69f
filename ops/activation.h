// ops/activation.h: SiLU, softplus, sigmoid, GELU and dropout.
//
// Shapes: x is any shape (..); the result has x's shape, dtype (f32/f64) and device.
//
// Derivatives (g = dL/dy, s = sigmoid(x)):
//   y = silu(x)     = x s                                       dx = g s (1 + x (1 - s))
//   y = softplus(x) = log1p(exp x) for x <= 20, x above 20      dx = g s for x <= 20, g above
//   y = sigmoid(x)  = s = 1 / (1 + exp(-x))                     dx = g s (1 - s)
//   y = gelu(x)     = x Phi(x) = x/2 (1 + erf(x / sqrt 2))      dx = g (Phi(x) + x phi(x))
//   y = gelu(x, tanh) = x/2 (1 + t), t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3)
//                                                   dx = g (1/2 (1 + t) + x/2 (1 - t^2) du/dx)
//   y = dropout(x)  = x m / (1 - p), m_i = [U(seed, offset + i) >= p]    dx = g m / (1 - p)
//
// Softplus uses PyTorch's and mamba's threshold 20 in the forward and the backward. sigmoid and
// softplus are stable for any |x|, and GELU is computed as x erfc(-x / sqrt 2) / 2 and
// x sigmoid(2u), which do not cancel for negative x (common/activation.h).
//
// Dropout draws its mask from the counter-based RNG (tensor/random.h): element i of the mask is
// a function of (seed, offset + i) alone, so CPU and CUDA give the same mask for the same
// generator state. The draw reserves numel counters of `gen`. The backward regenerates the mask
// from (seed, offset) instead of saving it (no memory held between forward and backward). When
// training is false or p = 0 dropout is the identity: it returns x itself and draws nothing.
// p = 1 drops everything (y = 0, dx = 0).
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "tensor/tensor.h"

namespace mg {

enum class GeluApprox : int { none, tanh };

Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::none);
Tensor dropout(const Tensor& x, double p, Generator& gen = default_generator(), bool training = true);

// ---- kernels (contiguous, n elements) -------------------------------------------------------
// out[i] = act(x[i]). Writes (=).
template <typename T> void activation_forward_cpu(T* out, const T* x, int64_t n, Activation act);
// dx[i] = dy[i] act'(x[i]). Writes (=).
template <typename T> void activation_backward_cpu(T* dx, const T* dy, const T* x, int64_t n, Activation act);
// out[i] = x[i] scale if the mask keeps element i (dropout_keep(seed, offset, i, p)), else 0;
// scale = 1 / (1 - p). Writes (=). The map is its own adjoint, so the backward is the same
// kernel applied to dy.
template <typename T>
void dropout_cpu(T* out, const T* x, int64_t n, double p, T scale, uint64_t seed, uint64_t offset);

// References: the textbook formulas in double (std::exp, std::log1p, std::erf, std::tanh).
template <typename T> void activation_ref(double* out, const T* x, int64_t n, Activation act);
template <typename T>
void dropout_ref(double* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t offset);

} // namespace mg
