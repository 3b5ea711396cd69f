// ops/scan_math.h: scalar helpers of the selective scan, compiled for the CPU and CUDA kernels.
#pragma once
#include <cmath>
#include <cstdint>
#include <bit>

#include "tensor/indexing.h"

namespace mg::scan {

constexpr double kLog2e = 1.4426950408889634;

// softplus with PyTorch's threshold: x above 20 passes through (log1p(exp x) == x in float there).
template <typename T> MG_HD T softplus(T x) {
    using std::exp; using std::log1p;
    return x <= T(20) ? log1p(exp(x)) : x;
}
// d softplus / dx = sigmoid(x) below the threshold, 1 above.
template <typename T> MG_HD T softplus_grad(T x) {
    using std::exp;
    return x <= T(20) ? T(1) / (T(1) + exp(-x)) : T(1);
}
template <typename T> MG_HD T sigmoid(T x) {
    using std::exp;
    return T(1) / (T(1) + exp(-x));
}

// 2^x for the CPU float path: round to the nearest integer k, then 2^f (|f| <= 1/2) by its
// degree-6 Taylor polynomial (relative error < 2e-7, about one float ulp), times 2^k through the
// exponent bits. Branch-free, so the compiler vectorises loops over states. Below -126 the result
// flushes to 0, which the recurrence treats as full decay.
inline float exp2_fast(float x) {
    x = x > -126.f ? x : -126.f; // selects, if-converted under -fno-trapping-math (Makefile)
    x = x < 126.f ? x : 126.f;
    // round to nearest by the 1.5·2^23 trick: plain SSE2 arithmetic, so it vectorises (nearbyint
    // is a libm call on baseline x86-64)
    float k = (x + 12582912.f) - 12582912.f;
    float f = (x - k) * 0.6931471805599453f; // ln 2 · f: the polynomial is exp(f ln 2)
    float p = 1.f + f * (1.f + f * (0.5f + f * (1.f / 6 + f * (1.f / 24 + f * (1.f / 120 + f * (1.f / 720))))));
    return p * std::bit_cast<float>((int32_t(k) + 127) << 23);
}

} // namespace mg::scan
