// tests/test_vec_math.cpp: the vectorisable float math of ops/vec_math.h against double libm, in
// ulps, over an even sweep of float bit patterns (both signs, every binade, subnormals included),
// the edge values (±0, subnormals, the overflow/underflow boundaries, ±inf, NaN), and a check that
// a loop over an array gives the same bits as the scalar calls. The hidden case
// "[vec_math_exhaustive]" runs the same check on all 2^32 floats (minutes; run it by hand).
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/vec_math.h"
#include "tests/helpers.h"

using namespace mg;

namespace {

// One ulp of a float of magnitude |m| (the subnormal spacing 2^-149 below 2^-126).
double ulp_of(double m) {
    m = std::fabs(m);
    return m >= 0x1p-126 ? std::ldexp(1.0, std::ilogb(m) - 23) : 0x1p-149;
}

// The error of f against the double ref in ulps of `scale` (the result's own magnitude unless a
// function with cancellation says otherwise). Non-finite refs must be matched exactly: NaN by NaN,
// a ref past FLT_MAX by the inf it rounds to.
double ulp_err(float f, double ref, double scale) {
    if (std::isnan(ref)) return std::isnan(f) ? 0 : INFINITY;
    float rf = float(ref);
    if (std::isinf(rf)) return f == rf ? 0 : INFINITY;
    if (!std::isfinite(f)) return INFINITY;
    return std::fabs(double(f) - ref) / ulp_of(scale);
}

double sigmoid_d(double x) { return 1 / (1 + std::exp(-x)); }

// Each function also compiled for AVX2 + FMA, as the kernels' AVX2 paths inline it (FMA
// contraction changes the rounding, so that version is checked too, when the CPU has it).
#if MG_VM_HAVE_AVX2
#define MG_AVX2_DEF(f) MG_VM_AVX2_FN float f##_avx2(float x) { return vm::f(x); }
MG_AVX2_DEF(exp) MG_AVX2_DEF(exp2) MG_AVX2_DEF(exp2_decay) MG_AVX2_DEF(log1p) MG_AVX2_DEF(softplus) MG_AVX2_DEF(sigmoid)
MG_AVX2_DEF(softplus_grad) MG_AVX2_DEF(silu) MG_AVX2_DEF(silu_grad)
#undef MG_AVX2_DEF
#define MG_AVX2_VERSION(f) f##_avx2
#else
#define MG_AVX2_VERSION(f) nullptr
#endif

// exp2_decay on 8 packed floats, from and to arrays (in each build, as the scan kernels use it)
#pragma GCC diagnostic ignored "-Wpsabi" // f32x8 by value, inlined: see ops/vec_math.h
inline void exp2_decay_x8_body(const float* in, float* out) {
    vm::f32x8 v;
    std::memcpy(&v, in, sizeof v);
    v = vm::exp2_decay(v);
    std::memcpy(out, &v, sizeof v);
}
void exp2_decay_x8(const float* in, float* out) { exp2_decay_x8_body(in, out); }
#if MG_VM_HAVE_AVX2
MG_VM_AVX2_FN void exp2_decay_x8_avx2(const float* in, float* out) { exp2_decay_x8_body(in, out); }
#endif

struct Fn {
    const char* name;
    float (*f)(float);
    float (*f_avx2)(float); // null without an AVX2 build
    double (*ref)(double);
    double bound;       // ulps
    double min_x;       // below this x, the bound is not claimed (see ops/vec_math.h)
    bool term_scale;    // measure against the larger term, not the result (a root inside)
    double max_x = INFINITY; // from this x on, the bound is not claimed
};

#define MG_FN(f) #f, vm::f, MG_AVX2_VERSION(f)
const Fn kFns[] = {
    {MG_FN(exp), [](double x) { return std::exp(x); }, 1.0, -INFINITY, false},
    {MG_FN(exp2), [](double x) { return std::exp2(x); }, 1.5, -INFINITY, false},
    // normal results only (the edges are checked in "edge values")
    {MG_FN(exp2_decay), [](double x) { return std::exp2(x); }, 1.5, -126.0, false, 127.5},
    {MG_FN(log1p), [](double x) { return std::log1p(x); }, 1.0, -INFINITY, false},
    {MG_FN(softplus), [](double x) { return x > 20 ? x : std::log1p(std::exp(x)); }, 2.0, -INFINITY, false},
    {MG_FN(sigmoid), sigmoid_d, 2.5, -INFINITY, false},
    {MG_FN(softplus_grad), [](double x) { return x > 20 ? 1.0 : sigmoid_d(x); }, 2.5, -INFINITY, false},
    // x e^x lands in the subnormals below -87, where e^x's own absolute error 2^-150 is scaled by |x|
    {MG_FN(silu), [](double x) { return x * sigmoid_d(x); }, 3.0, -87.0, false},
    // s (1 + x (1 - s)) has a root near x = -1.28: measured against the larger of its two terms
    {MG_FN(silu_grad), [](double x) { double s = sigmoid_d(x); return s * (1 + x * (1 - s)); }, 4.0, -87.0, true},
};
#undef MG_FN

float from_bits(uint32_t b) {
    float x;
    std::memcpy(&x, &b, 4);
    return x;
}

// Checks fn (f, or its AVX2 build) on the floats with bit patterns 0, stride, 2 stride, ... (all
// of them for stride 1).
void sweep(const Fn& fn, uint64_t stride, bool avx2) {
    float (*f)(float) = avx2 ? fn.f_avx2 : fn.f;
    double worst = 0;
    float worst_x = 0;
    for (uint64_t i = 0; i < (uint64_t(1) << 32); i += stride) {
        float x = from_bits(uint32_t(i));
        if (!(x >= fn.min_x && x < fn.max_x) && !std::isnan(x)) continue;
        double xd = x, ref = fn.ref(xd);
        double scale = ref;
        if (fn.term_scale) {
            double s = sigmoid_d(xd);
            scale = std::max(s, std::fabs(xd) * s * (1 - s));
        }
        double e = ulp_err(f(x), ref, scale);
        if (e > worst) { worst = e; worst_x = x; }
    }
    INFO(fn.name << (avx2 ? " (AVX2 + FMA)" : "") << ": worst " << worst << " ulp at x = " << worst_x << " (stride "
                 << stride << ")");
    CHECK(worst <= fn.bound);
}

} // namespace

TEST_CASE("vec_math: every function within its ulp bound over a sweep of all float bit patterns", "[vec_math]") {
    // 2^32 / 1021 ~ 4.2 million inputs per function, every binade of both signs
    for (const Fn& fn : kFns)
        SECTION(fn.name) {
            sweep(fn, 1021, false);
            if (vm::use_avx2()) sweep(fn, 1021, true);
        }
}

TEST_CASE("vec_math: on all 2^32 floats (hidden; minutes)", "[.][vec_math_exhaustive]") {
    for (const Fn& fn : kFns)
        SECTION(fn.name) {
            sweep(fn, 1, false);
            if (vm::use_avx2()) sweep(fn, 1, true);
        }
}

TEST_CASE("vec_math: edge values", "[vec_math]") {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const float tiny = std::numeric_limits<float>::denorm_min(), fmax = std::numeric_limits<float>::max();
    // exp: 0 below the range and at -inf, inf above it, 1 at ±0, subnormal results rounded right
    CHECK(vm::exp(-inf) == 0.f);
    CHECK(vm::exp(-104.f) == 0.f);
    CHECK(vm::exp(-1000.f) == 0.f);
    CHECK(vm::exp(-fmax) == 0.f);
    CHECK(vm::exp(inf) == inf);
    CHECK(vm::exp(89.f) == inf);
    CHECK(vm::exp(fmax) == inf);
    CHECK(vm::exp(0.f) == 1.f);
    CHECK(vm::exp(-0.f) == 1.f);
    CHECK(vm::exp(tiny) == 1.f);
    auto near = [](float f, double ref, double bound) { return ulp_err(f, ref, ref) <= bound; };
    CHECK(near(vm::exp(88.72f), std::exp(double(88.72f)), 1));   // just below FLT_MAX
    CHECK(vm::exp(-103.9f) == tiny);                              // 2^-149, the smallest subnormal
    CHECK(near(vm::exp(-100.f), std::exp(-100.0), 1));           // mid-subnormal
    CHECK(near(vm::exp(-87.5f), std::exp(double(-87.5f)), 1));   // the first subnormals
    CHECK(std::isnan(vm::exp(nan)));
    // exp2: exact at integers, including the subnormal and overflow ends
    for (int n = -149; n <= 127; ++n) CHECK(vm::exp2(float(n)) == std::ldexp(1.f, n));
    CHECK(vm::exp2(-150.f) == 0.f);
    CHECK(vm::exp2(128.f) == inf);
    CHECK(vm::exp2(-inf) == 0.f);
    CHECK(vm::exp2(inf) == inf);
    CHECK(std::isnan(vm::exp2(nan)));
    // exp2_decay: exact at integers over the normal range, 0 from -127 down, inf from 127.5 up,
    // the subnormal results of (-126.5, -126) kept within 2^-150, those below flushed to 0
    for (int n = -126; n <= 127; ++n) CHECK(vm::exp2_decay(float(n)) == std::ldexp(1.f, n));
    for (float x : {-127.f, -127.5f, -200.f, -fmax, -inf}) CHECK(vm::exp2_decay(x) == 0.f);
    for (float x : {127.5f, 128.f, 1000.f, fmax, inf}) CHECK(vm::exp2_decay(x) == inf);
    CHECK(std::fabs(double(vm::exp2_decay(-126.25f)) - std::exp2(-126.25)) <= 0x1p-150);
    CHECK(vm::exp2_decay(-126.75f) == 0.f);
    CHECK(std::isnan(vm::exp2_decay(nan)));
    CHECK(std::isnan(vm::exp2_decay(-nan)));
    // log1p: x itself for tiny x (subnormals, ±0 with its sign), -inf at -1, NaN below it
    for (float x : {tiny, -tiny, 1e-30f, -1e-30f, 1e-8f})
        CHECK(vm::log1p(x) == x);
    CHECK(std::signbit(vm::log1p(-0.f)));
    CHECK(vm::log1p(-1.f) == -inf);
    CHECK(std::isnan(vm::log1p(-1.5f)));
    CHECK(std::isnan(vm::log1p(-inf)));
    CHECK(vm::log1p(inf) == inf);
    CHECK(vm::log1p(fmax) == float(std::log1p(double(fmax))));
    CHECK(std::isnan(vm::log1p(nan)));
    // softplus: x itself above 20, log1p(e^x) at 20, e^x deep in the negatives, 0 at -inf
    CHECK(vm::softplus(20.5f) == 20.5f);
    CHECK(vm::softplus(inf) == inf);
    CHECK(vm::softplus(fmax) == fmax);
    CHECK(near(vm::softplus(20.f), std::log1p(std::exp(20.0)), 2));
    CHECK(near(vm::softplus(-50.f), std::exp(-50.0), 2));
    CHECK(vm::softplus(-inf) == 0.f);
    CHECK(std::isnan(vm::softplus(nan)));
    // sigmoid and friends saturate without NaN
    CHECK(vm::sigmoid(inf) == 1.f);
    CHECK(vm::sigmoid(-inf) == 0.f);
    CHECK(vm::sigmoid(0.f) == 0.5f);
    CHECK(near(vm::sigmoid(-100.f), sigmoid_d(-100.0), 2.5)); // subnormal result
    CHECK(std::isnan(vm::sigmoid(nan)));
    CHECK(vm::softplus_grad(25.f) == 1.f);
    CHECK(vm::silu(inf) == inf);
    CHECK(vm::silu(-1000.f) == 0.f);
    CHECK(vm::silu(0.f) == 0.f);
    CHECK(vm::silu_grad(1000.f) == 1.f);
    CHECK(vm::silu_grad(-1000.f) == 0.f);
    CHECK(vm::silu_grad(0.f) == 0.5f);
}

TEST_CASE("vec_math: a vectorised loop gives the scalar calls' bits", "[vec_math]") {
    // The kernels call these from `omp simd` loops; packed code must compute the same function.
    const int n = 4099; // not a multiple of any vector width
    std::vector<float> x(n), ye(n), yl(n), ys(n), yg(n), yd(n);
    Generator g(7);
    Tensor t = Tensor::uniform({n}, -120, 120, {DType::f32}, g);
    std::memcpy(x.data(), t.data<float>(), sizeof(float) * n);
    x[0] = -std::numeric_limits<float>::infinity();
    x[1] = std::numeric_limits<float>::quiet_NaN();
#pragma omp simd
    for (int i = 0; i < n; ++i) {
        ye[i] = vm::exp(x[i]);
        yl[i] = vm::log1p(x[i] > -1 ? x[i] : -x[i]);
        ys[i] = vm::softplus(x[i]);
        yg[i] = vm::silu_grad(x[i]);
        yd[i] = vm::exp2_decay(x[i]);
    }
    auto same = [](float a, float b) { return std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b)); };
    int bad = 0;
    for (int i = 0; i < n; ++i) {
        float xi = x[i];
        bad += !same(ye[i], vm::exp(xi));
        bad += !same(yl[i], vm::log1p(xi > -1 ? xi : -xi));
        bad += !same(ys[i], vm::softplus(xi));
        bad += !same(yg[i], vm::silu_grad(xi));
        bad += !same(yd[i], vm::exp2_decay(xi));
    }
    CHECK(bad == 0);
}

TEST_CASE("vec_math: exp2_decay on packed floats gives the scalar calls' bits", "[vec_math]") {
    const int n = 4096;
    std::vector<float> x(n), y(n);
    Generator g(8);
    Tensor t = Tensor::uniform({n}, -140, 140, {DType::f32}, g);
    std::memcpy(x.data(), t.data<float>(), sizeof(float) * n);
    const float inf = std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float edges[] = {-inf, inf, nan, -127.f, -126.75f, -126.f, 127.5f, 0.f, -0.f};
    std::memcpy(x.data(), edges, sizeof edges);
    auto same = [](float a, float b) { return std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b)); };
    int bad = 0;
    for (int i = 0; i < n; i += 8) exp2_decay_x8(x.data() + i, y.data() + i);
    for (int i = 0; i < n; ++i) bad += !same(y[i], vm::exp2_decay(x[i]));
#if MG_VM_HAVE_AVX2
    if (vm::use_avx2()) {
        for (int i = 0; i < n; i += 8) exp2_decay_x8_avx2(x.data() + i, y.data() + i);
        for (int i = 0; i < n; ++i) bad += !same(y[i], exp2_decay_avx2(x[i]));
    }
#endif
    CHECK(bad == 0);
}
