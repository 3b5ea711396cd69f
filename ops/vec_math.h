// ops/vec_math.h: float exp, exp2, log1p, softplus, sigmoid and SiLU for the CPU kernels.
//
// libm's expf/log1pf are scalar calls, so a loop that calls them cannot be vectorised. These are
// branch-free (selects, integer bit operations, polynomials), so a plain loop or an `omp simd`
// loop over arrays that calls them compiles to packed SIMD. Error bounds, measured against double
// libm by tests/test_vec_math.cpp on every float of the range plus sampled and edge inputs:
//
//   exp, exp2         <= 1 ulp (including the subnormal results), exactly 0 below the range,
//                     inf above it, exp(-inf) = 0, NaN -> NaN
//   exp2_decay        <= 1.5 ulp for x in [-126, 127.5); within 2^-150 on [-126.5, -126),
//                     0 below, inf from 127.5 up, NaN -> NaN
//   log1p             <= 2 ulp on (-1, inf]; -1 -> -inf, < -1 -> NaN, subnormals returned as is
//   softplus          <= 2 ulp; x itself above 20 (PyTorch's threshold)
//   sigmoid           <= 2 ulp, over the whole float range (subnormal results included)
//   silu              <= 3 ulp
//
// These rely on -fno-trapping-math (Makefile) to if-convert the selects. Double callers use libm.
#pragma once
#include <atomic>
#include <bit>
#include <cstdint>
#include <limits>

namespace mg::vm {

// ---- AVX2 + FMA code paths ----------------------------------------------------------------------
// The Makefile targets baseline x86-64 (SSE2, 4 floats a vector, no FMA). A kernel whose time goes
// into these functions can be compiled a second time for AVX2 + FMA, by a wrapper marked
// MG_VM_AVX2_FN (it inlines everything it calls, so the functions below are compiled for AVX2
// too), and pick one at run time with use_avx2(). The two paths round differently (FMA), each
// deterministically.
#if defined(__x86_64__) && defined(__GNUC__)
#define MG_VM_HAVE_AVX2 1
#define MG_VM_AVX2_FN [[gnu::target("avx2,fma"), gnu::flatten]]
#else
#define MG_VM_HAVE_AVX2 0
#endif

inline std::atomic<bool> avx2_allowed{true};

// True when this CPU has AVX2 and FMA and set_avx2(false) has not switched them off.
inline bool use_avx2() {
#if MG_VM_HAVE_AVX2
    static const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return cpu && avx2_allowed.load(std::memory_order_relaxed);
#else
    return false;
#endif
}

// For tests and benchmarks: false runs the baseline code even on an AVX2 CPU; true restores the
// default. Not for use while kernels run on other threads.
inline void set_avx2(bool allowed) { avx2_allowed.store(allowed, std::memory_order_relaxed); }

namespace detail {

// 2^n for integer n in [-150, 129] as two normal factors 2^(n - n/2) and 2^(n/2): multiplying a
// value in [1/2, 2] by the first is exact, by the second rounds once, so results that land in
// the subnormal range are rounded correctly and results past FLT_MAX become inf.
inline float scale2(float p, int32_t n) {
    int32_t n1 = n >> 1, n2 = n - n1;
    return p * std::bit_cast<float>((n2 + 127) << 23) * std::bit_cast<float>((n1 + 127) << 23);
}

// The nearest integer to x (|x| < 2^22) by the 1.5·2^23 trick: plain float adds, so it
// vectorises on baseline x86-64, where nearbyint is a libm call.
inline float round_near(float x) { return (x + 12582912.f) - 12582912.f; }

} // namespace detail

// e^x (Cephes expf): n = round(x log2 e), r = x - n ln 2 in two parts (Cody-Waite, so r is
// nearly exact), e^r = 1 + r + r^2 P(r) with P of degree 5 on |r| <= ln2/2, times 2^n. The clamp
// to [-104, 89] keeps n in range: e^-104 already rounds to 0 and e^89 to inf, so the clamped
// ends give the right answers for every x beyond them, including ±inf.
inline float exp(float x) {
    float xc = x > -104.f ? x : -104.f; // NaN -> -104 here (compares false), restored below
    xc = xc < 89.f ? xc : 89.f;
    float fn = detail::round_near(xc * 1.44269504088896341f);
    float r = xc - fn * 0.693359375f; // exact: 0.693359375 has 9 significant bits, |n| <= 150
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = detail::scale2(p * (r * r) + r + 1.f, int32_t(fn));
    return x == x ? e : x;
}

// 2^x: n = round(x), f = x - n exactly, 2^f = 1 + f Q(f) with Q of degree 5 (Cephes exp2f) on
// |f| <= 1/2, times 2^n; clamped to [-150, 129] like exp (2^-150 rounds to 0, 2^128 is inf).
inline float exp2(float x) {
    float xc = x > -150.f ? x : -150.f;
    xc = xc < 129.f ? xc : 129.f;
    float fn = detail::round_near(xc);
    float f = xc - fn;
    float q = 1.535336188319500e-4f;
    q = q * f + 1.339887440266574e-3f;
    q = q * f + 9.618437357674640e-3f;
    q = q * f + 5.550332471162809e-2f;
    q = q * f + 2.402264791363012e-1f;
    q = q * f + 6.931472028550421e-1f;
    float e = detail::scale2(q * f + 1.f, int32_t(fn));
    return x == x ? e : x;
}

// 8 packed floats (GCC's vector extension): one AVX register in an AVX2 build, two SSE registers
// in the baseline build. Kernels that must keep values in registers across a loop (GCC keeps
// arrays in memory there) use these; exp2_decay below also takes them.
//
// Passed by value in the baseline build, GCC warns (-Wpsabi) that AVX would pass them differently.
// The functions here are inline, as should be their callers (so that no call passes one): the
// warning is silenced here, and callers silence it too.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
using f32x8 = float __attribute__((vector_size(32)));
using u32x8 = uint32_t __attribute__((vector_size(32)));

namespace detail {
template <typename F> struct bits_of { using type = uint32_t; };
template <> struct bits_of<f32x8> { using type = u32x8; };
} // namespace detail

// 2^x for the selective scan's decays 2^(Δ A log2 e), for a float or an f32x8, cheaper than exp2
// above. It gives up most subnormal results (x in [-126.5, -126) still gives a subnormal within
// 2^-150 of 2^x; below that it gives 0, "fully decayed") and the last half binade before overflow
// (x in [127.5, 128) gives inf, where 2^x is still just below FLT_MAX). In exchange, 2^n for n in
// [-127, 128] is one integer shift and add: the rounding constant leaves n in the low mantissa
// bits of t = x + 1.5·2^23, and shifting t's bits left by 23 moves them into the exponent field
// (the constant's own bits shift out); n = -127 comes out as +0 and n = 128 as inf. The clamps are
// written as `c > x ? c : x` so that a NaN x passes through them and comes out as NaN; ±inf give
// inf and 0. Same polynomial as exp2, so <= 1.5 ulp where the result is normal. Both forms compute
// the same operations, so a lane of the f32x8 gives the float's bits.
template <typename F> inline F exp2_decay(F x) {
    using U = typename detail::bits_of<F>::type;
    const F lo = F{} - 127.f, hi = F{} + 128.f; // F{} + c: c in every lane
    F xc = lo > x ? lo : x;
    xc = hi < xc ? hi : xc;
    F t = xc + 12582912.f;
    F f = xc - (t - 12582912.f);
    F q = F{} + 1.535336188319500e-4f;
    q = q * f + 1.339887440266574e-3f;
    q = q * f + 9.618437357674640e-3f;
    q = q * f + 5.550332471162809e-2f;
    q = q * f + 2.402264791363012e-1f;
    q = q * f + 6.931472028550421e-1f;
    // unsigned: the shift and add wrap modulo 2^32 by design (n = -127 gives the bits of +0)
    F scale = std::bit_cast<F>((std::bit_cast<U>(t) << 23) + (127u << 23));
    return (q * f + 1.f) * scale;
}
#pragma GCC diagnostic pop

// ln(1 + x): u = fl(1 + x) loses the low bits of x; c = (x - (u - 1)) / u puts them back to first
// order (u - 1 and x - (u - 1) are exact for u < 2^24), so log1p(x) = log(u) + c, with the
// correction added before the large terms. log(u) is Cephes logf: u = 2^e m with m in
// [sqrt(1/2), sqrt 2), log m = f - f^2/2 + f^3 P(f), f = m - 1, P of degree 8. When u = 1
// (|x| < 2^-24, subnormals included) everything but c is 0 and the result is x itself. u >= 2^-24
// for x > -1, so u is never subnormal.
inline float log1p(float x) {
    float u = 1.f + x;
    float c = (x - (u - 1.f)) / u;
    // unsigned: u < 0 (x < -1, answered NaN below) must not overflow a signed subtraction
    uint32_t iu = std::bit_cast<uint32_t>(u);
    uint32_t t = iu - 0x3f3504f3u; // bits of sqrt(1/2): the exponent field of t is e
    float fe = float(int32_t(t) >> 23);
    float f = std::bit_cast<float>(iu - (t & 0xff800000u)) - 1.f;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float r = (f * z * p + fe * -2.12194440e-4f + c - 0.5f * z) + f + fe * 0.693359375f;
    r = u == std::numeric_limits<float>::infinity() ? u : r; // x = +inf, or 1 + x rounding to inf
    r = u == 0.f ? -std::numeric_limits<float>::infinity() : r;
    r = x == 0.f ? x : r; // -0 keeps its sign
    return u < 0.f ? std::numeric_limits<float>::quiet_NaN() : r;
}

// PyTorch's F.softplus (threshold 20): x above 20, else log1p(e^x).
inline float softplus(float x) { return x > 20.f ? x : log1p(exp(x)); }

// 1 / (1 + e^-x) without overflow: e = e^-|x| is in (0, 1], and the negative side is e / (1 + e),
// so results down to the subnormal range stay accurate. One division either way.
inline float sigmoid(float x) {
    float e = exp(x < 0.f ? x : -x);
    return (x < 0.f ? e : 1.f) / (1.f + e);
}

// d softplus / dx: sigmoid below the threshold, 1 above it.
inline float softplus_grad(float x) { return x > 20.f ? 1.f : sigmoid(x); }

// x sigmoid(x) as one division, x / (1 + e^-x) or x e^x / (1 + e^x).
inline float silu(float x) {
    float e = exp(x < 0.f ? x : -x);
    return (x < 0.f ? x * e : x) / (1.f + e);
}

// d silu / dx = s (1 + x (1 - s)), s = sigmoid(x), with 1 - s = sigmoid(-x) computed as such:
// subtracting s from 1 would lose it for large x, where x (1 - s) still matters.
inline float silu_grad(float x) {
    float e = exp(x < 0.f ? x : -x), r = 1.f / (1.f + e);
    float s = x < 0.f ? e * r : r, s_neg = x < 0.f ? r : e * r;
    return s * (1.f + x * s_neg);
}

} // namespace mg::vm
