// tests/test_activation.cpp: SiLU, softplus, sigmoid, GELU and dropout: kernels against the
// double references at awkward sizes, softplus's threshold and extreme inputs, the dropout mask
// (same on CPU and CUDA, identity cases), gradcheck on each device, CUDA-vs-CPU parity, bad
// inputs.
#include <cmath>

#include "cuda/activation.h"
#include "ops/activation.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

const Activation kActs[] = {Activation::silu, Activation::softplus, Activation::sigmoid, Activation::gelu,
                            Activation::gelu_tanh};
const char* act_name(Activation a) {
    const char* n[] = {"silu", "softplus", "sigmoid", "gelu", "gelu_tanh"};
    return n[int(a)];
}

Tensor apply_op(Activation a, const Tensor& x) {
    switch (a) {
    case Activation::silu: return silu(x);
    case Activation::softplus: return softplus(x);
    case Activation::sigmoid: return sigmoid(x);
    case Activation::gelu: return gelu(x);
    default: return gelu(x, GeluApprox::tanh);
    }
}

} // namespace

TEST_CASE("activation: kernels and ops against the double reference at awkward sizes", "[activation]") {
    for (int64_t n : {1, 37, 1001}) {
        for (Activation a : kActs) {
            Generator g{uint64_t(n)};
            // [-30, 30] crosses softplus's threshold and saturates sigmoid
            Tensor x64 = Tensor::uniform({n}, -30, 30, {DType::f64}, g);
            Tensor x32 = x64.to(DType::f32);
            std::vector<double> ref(static_cast<size_t>(n));
            activation_ref<double>(ref.data(), x64.data<double>(), n, a);
            Tensor expect = Tensor::from_vector(ref, {n});
            std::string what = fmt::format("{}(n={})", act_name(a), n);
            // the CPU kernel writes every element (poisoned output)
            Tensor out = Tensor::full({n}, NAN, {DType::f64});
            activation_forward_cpu<double>(out.data<double>(), x64.data<double>(), n, a);
            // f64: the same functions up to rounding; erfc(z) deep in its tail (z ~ 20) turns
            // one ulp of z into ~2 z^2 ulp of the result, hence 1e-12 rather than 1e-15
            mg::test::require_close(out, expect, 1e-12, 1e-300, what + " cpu kernel f64");
            for (Device dev : devices()) {
                mg::test::require_close(apply_op(a, x64.to(dev)), expect, 1e-12, 1e-300, what + " f64 " + dev.str());
                // f32 against the f64 op on the same (f32-rounded) inputs: a few roundings of
                // the math, relative to the value; erfc's tail magnifies the rounding of its
                // argument z by 2 z^2 (z up to ~9 before f32 underflows), and exp(-2u) the rounding of 2u
                // by 2u (up to ~90), hence 1e-4 for both gelu forms.
                // The absolute floor covers results that f32 flushes to (sub)zero.
                double rtol32 = a == Activation::gelu || a == Activation::gelu_tanh ? 1e-4 : 2e-6;
                mg::test::require_close(apply_op(a, x32.to(dev)), apply_op(a, x32.to(DType::f64)), rtol32, 1e-30,
                                        what + " f32 " + dev.str());
            }
        }
    }
}

TEST_CASE("activation: softplus threshold 20 and very negative inputs; sigmoid at +-1000", "[activation]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f32, DType::f64}) {
            SECTION(fmt::format("{} {}", dev.str(), dtype_name(dt))) {
                std::vector<double> xs = {19.9, 20.0, 20.1, -100.0, -1000.0, 1000.0};
                Tensor x = Tensor::from_vector(xs, {6}, {dt, dev}).set_requires_grad(true);
                Tensor y = softplus(x);
                auto v = y.to(DType::f64).to_vector<double>();
                double tol = dt == DType::f32 ? 1e-6 : 1e-15;
                CHECK(v[0] == Approx(std::log1p(std::exp(19.9))).epsilon(tol)); // below: log1p(exp x)
                CHECK(v[1] == Approx(std::log1p(std::exp(20.0))).epsilon(tol)); // at 20: still log1p(exp x)
                CHECK(v[2] == double(dt == DType::f32 ? double(20.1f) : 20.1)); // above: exactly x
                CHECK(v[3] >= 0.0);                                              // never negative
                // exp(-100) ~ 3.7e-44 is subnormal in f32, where libraries may flush it to 0
                if (dt == DType::f64) CHECK(v[3] == Approx(std::exp(-100.0)).epsilon(1e-14));
                else CHECK(v[3] <= 1e-40);
                CHECK(v[4] == 0.0);
                CHECK(v[5] == 1000.0);
                sum(y).backward();
                auto d = x.grad().to(DType::f64).to_vector<double>();
                CHECK(d[0] == Approx(1 / (1 + std::exp(-19.9))).epsilon(tol));
                CHECK(d[2] == 1.0);
                CHECK(d[4] == 0.0);
                CHECK(d[5] == 1.0);
                for (double e : d) CHECK(std::isfinite(e));
                // sigmoid and silu saturate without NaN
                Tensor big = Tensor::from_vector(std::vector<double>{-1000, 1000}, {2}, {dt, dev});
                CHECK(sigmoid(big).to(DType::f64).to_vector<double>() == std::vector<double>{0, 1});
                auto s = silu(big).to(DType::f64).to_vector<double>();
                CHECK(s[0] == 0.0);
                CHECK(s[1] == 1000.0);
            }
        }
    }
}

TEST_CASE("activation: gelu's tanh approximation stays within 1e-3 of the exact form", "[activation]") {
    Tensor x = Tensor::uniform({101}, -6, 6, {DType::f64});
    // the documented maximum error of the tanh form is about 2e-4 (at |x| ~ 2)
    mg::test::require_close(gelu(x, GeluApprox::tanh), gelu(x), 0, 1e-3, "gelu tanh vs erf");
}

TEST_CASE("dropout: values against dropout_ref, mask reuse in backward, generator offsets", "[activation][dropout]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gx(5);
            Tensor x = Tensor::uniform({3, 37}, 0.5, 2.0, {DType::f64, dev}, gx).set_requires_grad(true);
            Generator gen(99);
            gen.take(11);
            Tensor y = dropout(x, 0.25, gen);
            CHECK(gen.offset() == 11 + 111); // one counter per element
            std::vector<double> ref(111);
            auto xv = x.to_vector<double>();
            dropout_ref<double>(ref.data(), xv.data(), 111, 0.25, 99, 11);
            mg::test::require_close(y, Tensor::from_vector(ref, {3, 37}), 1e-15, 0, "dropout vs ref");
            // backward uses the same mask: dx = g m / (1 - p) = y / x for g = 1
            sum(y).backward();
            auto yv = y.to_vector<double>(), dv = x.grad().to_vector<double>();
            int kept = 0;
            for (size_t i = 0; i < 111; ++i) {
                CHECK(dv[i] == Approx(yv[i] / xv[i]).epsilon(1e-15));
                kept += yv[i] != 0;
            }
            CHECK(kept > 0);
            CHECK(kept < 111);
            // a second draw uses fresh counters: a different mask
            Tensor y2 = dropout(x, 0.25, gen);
            CHECK(y2.to_vector<double>() != yv);
            // the fraction kept is 1 - p over many elements (binomial sd ~ 0.0016 at n = 1e5)
            Tensor ones = Tensor::ones({100000}, {DType::f32, dev});
            double frac = sum(dropout(ones, 0.3, gen)).item() * 0.7 / 100000;
            CHECK(frac == Approx(0.7).margin(0.01));
        }
    }
}

TEST_CASE("dropout: identity for p = 0 and for training = false; p = 1 drops all", "[activation][dropout]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor x = Tensor::randn({4, 5}, {DType::f32, dev});
            Generator gen(3);
            CHECK(dropout(x, 0.0, gen).same(x));
            CHECK(dropout(x, 0.7, gen, /*training=*/false).same(x));
            CHECK(gen.offset() == 0); // identity draws nothing
            Tensor xr = x.detach().set_requires_grad(true);
            Tensor z = dropout(xr, 1.0, gen);
            CHECK(z.to_vector<float>() == std::vector<float>(20, 0.f));
            sum(z).backward();
            CHECK(xr.grad().to_vector<float>() == std::vector<float>(20, 0.f));
        }
    }
}

TEST_CASE("dropout: CPU and CUDA draw the same mask from the same generator state", "[activation][dropout][cuda]") {
    MG_REQUIRE_CUDA();
    for (DType dt : {DType::f32, DType::f64}) {
        Tensor x = Tensor::randn({7, 129}, {dt});
        Generator gc(1234), gg(1234);
        gc.take(17);
        gg.take(17);
        Tensor yc = dropout(x, 0.4, gc), yg = dropout(x.to(Device::cuda(0)), 0.4, gg);
        // bit-identical: the mask is a function of (seed, offset + i), and both devices scale by
        // the same T(1 / (1 - p)) in one rounding
        mg::test::require_close(yg, yc, 0, 0, fmt::format("dropout mask {}", dtype_name(dt)));
        CHECK(gc.offset() == gg.offset());
    }
#ifdef MG_CUDA
    // the launcher writes every element (poisoned output)
    Tensor x = Tensor::randn({1000}, {DType::f32, Device::cuda(0)});
    Tensor out = Tensor::full({1000}, NAN, {DType::f32, Device::cuda(0)});
    cuda::dropout<float>(out.data<float>(), x.data<float>(), 1000, 0.5, 2.0f, 8, 9);
    for (float v : out.to_vector<float>()) CHECK(std::isfinite(v));
#endif
}

TEST_CASE("activation: bad inputs name the op and the tensor", "[activation][errors]") {
    Tensor ids = Tensor::zeros({2, 3}, {DType::i32});
    REQUIRE_ERROR_WITH(silu(ids), "silu", "(2,3) i32 cpu", "f32 or f64");
    REQUIRE_ERROR_WITH(softplus(Tensor()), "softplus", "undefined");
    REQUIRE_ERROR_WITH(sigmoid(ids), "sigmoid", "(2,3) i32 cpu");
    REQUIRE_ERROR_WITH(gelu(ids, GeluApprox::tanh), "gelu", "(2,3) i32 cpu");
    Tensor x = Tensor::zeros({4});
    REQUIRE_ERROR_WITH(dropout(x, 1.5), "dropout", "p = 1.5", "(4) f32 cpu", "0 <= p <= 1");
    REQUIRE_ERROR_WITH(dropout(x, -0.1), "dropout", "p = -0.1");
    REQUIRE_ERROR_WITH(dropout(ids, 0.5), "dropout", "(2,3) i32 cpu");
}
