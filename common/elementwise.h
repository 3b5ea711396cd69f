// common/elementwise.h: the pointwise math, written once and compiled for both the CPU and
// the CUDA kernels (MG_HD).
#pragma once
#include <cmath>

#include "tensor/indexing.h"

namespace mg {

enum class BinaryOp : int { add, sub, mul, div };
enum class UnaryOp : int { neg, exp, log, sqrt, rsqrt, pow, softshrink };

template <typename T> MG_HD T binary_apply(BinaryOp op, T a, T b) {
    switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    default: return a / b;
    }
}

template <typename T> MG_HD T rsqrt_of(T x) {
#if defined(__CUDA_ARCH__)
    return rsqrt(x);
#else
    return T(1) / std::sqrt(x);
#endif
}

template <typename T> MG_HD T unary_apply(UnaryOp op, T x, T p) {
    using std::exp; using std::log; using std::sqrt; using std::pow;
    switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return exp(x);
    case UnaryOp::log: return log(x);
    case UnaryOp::sqrt: return sqrt(x);
    case UnaryOp::rsqrt: return rsqrt_of(x);
    case UnaryOp::softshrink: return x > p ? x - p : x < -p ? x + p : T(0);
    default: return pow(x, p);
    }
}

// dy/dx times g, given x and y = f(x).
template <typename T> MG_HD T unary_grad(UnaryOp op, T g, T x, T y, T p) {
    using std::pow;
    switch (op) {
    case UnaryOp::neg: return -g;
    case UnaryOp::exp: return g * y;
    case UnaryOp::log: return g / x;
    case UnaryOp::sqrt: return g / (T(2) * y);
    case UnaryOp::rsqrt: return T(-0.5) * g * y * y * y;
    case UnaryOp::softshrink: return x > p || x < -p ? g : T(0);
    default: return p == T(0) ? T(0) : g * p * pow(x, p - T(1));
    }
}

} // namespace mg
