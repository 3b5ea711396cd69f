// common/activation.h: the pointwise activations and the dropout mask, written once and
// compiled for both the CPU and the CUDA kernels (MG_HD), so the two devices run the same math.
// The one scalar sigmoid and softplus of the project: the activation ops, the scan's Δ and gate,
// the convolutions' fused SiLU and the global-selection gate all call these (ops/vec_math.h has
// the same formulas for float with its own exp, written so CPU loops vectorise).
#pragma once
#include <cmath>
#include <cstdint>

#include "tensor/indexing.h"
#include "tensor/random.h"

namespace mg {

// gelu and gelu_tanh are the exact (erf) GELU and its tanh approximation (GeluApprox in
// ops/activation.h picks one).
enum class Activation : int { silu, softplus, sigmoid, gelu, gelu_tanh };

// softplus(x) = x above this, as PyTorch's F.softplus and mamba's fused delta_softplus.
inline constexpr double kSoftplusThreshold = 20.0;
inline constexpr double kSqrtHalf = 0.70710678118654752440;     // 1 / sqrt(2)
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1 / sqrt(2 pi)
inline constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
inline constexpr double kGeluTanhC = 0.044715;

// Stable for any x: exp only ever sees a non-positive argument, so it cannot overflow.
template <typename T> MG_HD T sigmoid_of(T x) {
    using std::exp;
    if (x >= T(0)) return T(1) / (T(1) + exp(-x));
    T e = exp(x);
    return e / (T(1) + e);
}

// log1p(exp x), never log(1 + exp x): for very negative x, exp x underflows gracefully to the
// correct tiny (or zero) result instead of rounding 1 + exp x to 1 too early.
template <typename T> MG_HD T softplus_of(T x) {
    using std::exp; using std::log1p;
    return x > T(kSoftplusThreshold) ? x : log1p(exp(x));
}

// d softplus / dx: sigmoid(x) below the threshold, 1 above it (where softplus passes x through).
template <typename T> MG_HD T softplus_grad_of(T x) {
    return x > T(kSoftplusThreshold) ? T(1) : sigmoid_of(x);
}

// GELU without cancellation for negative x: Phi(x) = erfc(-x / sqrt 2) / 2 rather than
// (1 + erf(x / sqrt 2)) / 2, and the tanh form as x sigmoid(2u) = x/2 (1 + tanh u).
template <typename T> MG_HD T gelu_tanh_arg(T x) { // 2u, u = sqrt(2/pi) (x + 0.044715 x^3)
    return T(2 * kSqrt2OverPi) * (x + T(kGeluTanhC) * x * x * x);
}

template <typename T> MG_HD T activation_apply(Activation act, T x) {
    using std::erfc;
    switch (act) {
    case Activation::silu: return x * sigmoid_of(x);
    case Activation::softplus: return softplus_of(x);
    case Activation::sigmoid: return sigmoid_of(x);
    case Activation::gelu: return T(0.5) * x * erfc(-x * T(kSqrtHalf));
    default: return x * sigmoid_of(gelu_tanh_arg(x));
    }
}

// g times d act(x) / dx.
template <typename T> MG_HD T activation_grad(Activation act, T g, T x) {
    using std::erfc; using std::exp;
    switch (act) {
    case Activation::silu: {
        T s = sigmoid_of(x);
        return g * s * (T(1) + x * (T(1) - s));
    }
    case Activation::softplus: return g * softplus_grad_of(x);
    case Activation::sigmoid: {
        T s = sigmoid_of(x);
        return g * s * (T(1) - s);
    }
    case Activation::gelu: { // Phi(x) + x phi(x)
        T cdf = T(0.5) * erfc(-x * T(kSqrtHalf));
        T pdf = T(kInvSqrt2Pi) * exp(T(-0.5) * x * x);
        return g * (cdf + x * pdf);
    }
    default: { // y = x s(v), v = 2u:  dy/dx = s + x s (1 - s) dv/dx,  dv/dx = 2 sqrt(2/pi) (1 + 3c x^2)
        T s = sigmoid_of(gelu_tanh_arg(x));
        T dv = T(2 * kSqrt2OverPi) * (T(1) + T(3 * kGeluTanhC) * x * x);
        return g * (s + x * s * (T(1) - s) * dv);
    }
    }
}

// Element i of the dropout draw (seed, offset) is kept when U(seed, offset + i) >= p, so it is
// kept with probability 1 - p, and the same on every device (tensor/random.h). The comparison is
// in double on both devices, so the CPU and CUDA masks are bit-identical.
MG_HD bool dropout_keep(uint64_t seed, uint64_t offset, int64_t i, double p) {
    return rng::uniform01(seed, offset + uint64_t(i)) >= p;
}

} // namespace mg
