// tests/test_cross_entropy.cpp: fused cross-entropy against the double reference at awkward
// sizes, ignored positions (some, all), extreme logits, the indexed form against the full one,
// gradcheck on each device, parity, bad inputs.
#include <cmath>

#include "ops/cross_entropy.h"
#include "ops/linear.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

// Targets in [0, V), with about `ignored` of them set to ignore_index.
Tensor make_targets(Shape shape, int64_t V, double ignored, uint64_t seed, int32_t ignore_index = kIgnoreIndex) {
    Generator g(seed);
    int64_t n = numel_of(shape);
    auto u = Tensor::uniform({n}, 0, 1, {DType::f64}, g).to_vector<double>();
    auto r = Tensor::uniform({n}, 0, double(V), {DType::f64}, g).to_vector<double>();
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (size_t i = 0; i < t.size(); ++i) t[i] = u[i] < ignored ? ignore_index : std::min(int32_t(V - 1), int32_t(r[i]));
    return Tensor::from_vector(t, shape);
}

struct Size { Shape lead; int64_t V; double ignored; };

} // namespace

TEST_CASE("cross_entropy: loss and dlogits against the reference at awkward sizes", "[cross_entropy]") {
    const Size sizes[] = {{{1}, 1, 0}, {{2, 37}, 11, 0.3}, {{5}, 1000, 0}, {{1, 4}, 5003, 0.25}, {{3, 1, 2}, 2, 0.5}};
    for (const Size& s : sizes) {
        int64_t R = numel_of(s.lead), V = s.V;
        Shape ls = s.lead;
        ls.push_back(V);
        Generator g(uint64_t(R * 31 + V));
        Tensor z = Tensor::randn(ls, {DType::f64}, g) * 3.0;
        Tensor t = make_targets(s.lead, V, s.ignored, uint64_t(R + V));
        double ref = 0;
        std::vector<double> dref(static_cast<size_t>(R * V));
        cross_entropy_ref<double>(&ref, dref.data(), z.data<double>(), t.data<int32_t>(), R, V, kIgnoreIndex);
        std::string what = fmt::format("cross_entropy(lead {}, V={}, ignored ~{})", shape_str(s.lead), V, s.ignored);
        {   // the CPU kernels write every element (poisoned outputs)
            Tensor loss = Tensor::full({}, NAN, {DType::f64}), count = Tensor::full({1}, NAN, {DType::f64});
            Tensor lse = Tensor::full({R}, NAN, {DType::f64}), dz = Tensor::full(ls, NAN, {DType::f64});
            cross_entropy_forward_cpu<double>(loss.data<double>(), count.data<double>(), lse.data<double>(),
                                              z.data<double>(), t.data<int32_t>(), R, V, kIgnoreIndex);
            CHECK(loss.item() == Approx(ref).epsilon(1e-13));
            Tensor one = Tensor::ones({}, {DType::f64});
            cross_entropy_backward_cpu<double>(dz.data<double>(), one.data<double>(), z.data<double>(), t.data<int32_t>(),
                                               lse.data<double>(), count.data<double>(), R, V, kIgnoreIndex);
            mg::test::require_close(dz, Tensor::from_vector(dref, ls), 1e-12, 1e-14, what + " cpu backward kernel");
        }
        for (Device dev : devices()) {
            for (DType dt : {DType::f64, DType::f32}) {
                Tensor zd = z.to(dt).to(dev).detach().set_requires_grad(true);
                Tensor loss = cross_entropy(zd, t.to(dev));
                REQUIRE(loss.shape() == Shape{});
                std::string tag = fmt::format("{} {} {}", what, dev.str(), dtype_name(dt));
                // f32: one rounding of the logits (|z| ~ 10: 1e-6 absolute) and f32 sums over V
                double tol = dt == DType::f32 ? 1e-5 : 1e-12;
                INFO(tag);
                CHECK(loss.item() == Approx(ref).epsilon(tol).margin(tol));
                loss.backward(Tensor::full({}, 2.5, {dt, dev})); // g = 2.5 scales dlogits
                mg::test::require_close(zd.grad(), Tensor::from_vector(dref, ls) * 2.5, tol, tol, tag + " dlogits");
            }
        }
    }
}

TEST_CASE("cross_entropy: every position ignored gives loss 0 and gradient 0", "[cross_entropy]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor z = Tensor::randn({3, 4, 6}, {DType::f32, dev}).set_requires_grad(true);
            Tensor t = Tensor::full({3, 4}, kIgnoreIndex, {DType::i32, dev});
            Tensor loss = cross_entropy(z, t);
            CHECK(loss.item() == 0.0);
            loss.backward();
            CHECK(z.grad().to_vector<float>() == std::vector<float>(72, 0.f));
            // no rows at all behaves the same
            Tensor e = Tensor::zeros({0, 5}, {DType::f32, dev}).set_requires_grad(true);
            Tensor le = cross_entropy(e, Tensor::zeros({0}, {DType::i32, dev}));
            CHECK(le.item() == 0.0);
            le.backward();
            CHECK(e.grad().shape() == Shape{0, 5});
        }
    }
}

TEST_CASE("cross_entropy: extreme logits (1e4) stay finite and exact; another ignore_index", "[cross_entropy]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f32, DType::f64}) {
            SECTION(fmt::format("{} {}", dev.str(), dtype_name(dt))) {
                // row 0: the target holds the huge logit (loss ~ 0); row 1: the target is 2e4 below
                // the max (loss ~ 2e4); row 2: all equal and huge (loss = log 3)
                std::vector<double> zv = {1e4, -1e4, 0, -1e4, 1e4, 0, 1e4, 1e4, 1e4};
                std::vector<int32_t> tv = {0, 0, 1};
                Tensor z = Tensor::from_vector(zv, {3, 3}, {dt, dev}).set_requires_grad(true);
                Tensor t = Tensor::from_vector(tv, {3}).to(dev);
                double ref = 0;
                std::vector<double> dref(9);
                cross_entropy_ref<double>(&ref, dref.data(), zv.data(), tv.data(), 3, 3, kIgnoreIndex);
                Tensor loss = cross_entropy(z, t);
                CHECK(std::isfinite(loss.item()));
                CHECK(loss.item() == Approx(ref).epsilon(1e-6));
                CHECK(ref == Approx((2e4 + std::log(3.0)) / 3).epsilon(1e-12));
                loss.backward();
                auto d = z.grad().to(DType::f64).to_vector<double>();
                // f32 stores lse ~ 1e4 to within half an ulp (4.9e-4), so softmax = exp(z - lse)
                // is good to ~5e-4 relative: 2e-4 absolute on entries of size 1/3
                double margin = dt == DType::f32 ? 2e-4 : 1e-12;
                for (size_t i = 0; i < 9; ++i) {
                    CHECK(std::isfinite(d[i]));
                    CHECK(d[i] == Approx(dref[i]).margin(margin));
                }
                // ignore_index = 0: rows whose target is 0 are the ignored ones
                Tensor l0 = cross_entropy(z.detach(), t, /*ignore_index=*/0);
                CHECK(l0.item() == Approx(std::log(3.0)).epsilon(1e-6));
            }
        }
    }
}

TEST_CASE("cross_entropy_indexed equals the full cross_entropy where only those positions are labelled", "[cross_entropy]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f64, DType::f32}) {
            SECTION(fmt::format("{} {}", dev.str(), dtype_name(dt))) {
                const int64_t B = 3, L = 17, Dm = 9, V = 23;
                Generator g(17);
                Options o{dt, dev};
                Tensor hidden = Tensor::randn({B, L, Dm}, o, g), W = Tensor::randn({V, Dm}, o, g);
                // labelled positions (flat b*L + l), one of them carrying the ignore value
                std::vector<int32_t> pos = {3, 16, 17, 20, 33, 50}, tgt = {5, 0, 22, kIgnoreIndex, 7, 7};
                std::vector<int32_t> full(size_t(B * L), kIgnoreIndex);
                for (size_t i = 0; i < pos.size(); ++i) full[size_t(pos[i])] = tgt[i];
                Tensor h1 = hidden.detach().set_requires_grad(true), w1 = W.detach().set_requires_grad(true);
                Tensor h2 = hidden.detach().set_requires_grad(true), w2 = W.detach().set_requires_grad(true);
                Tensor li = cross_entropy_indexed(h1, w1, Tensor::from_vector(pos, {6}).to(dev),
                                                  Tensor::from_vector(tgt, {6}).to(dev));
                Tensor lf = cross_entropy(linear(h2, w2), Tensor::from_vector(full, {B, L}).to(dev));
                double tol = dt == DType::f32 ? 2e-6 : 1e-13; // the same math, different GEMM shapes
                CHECK(li.item() == Approx(lf.item()).epsilon(tol));
                li.backward();
                lf.backward();
                mg::test::require_close(h1.grad(), h2.grad(), tol, tol, "dhidden");
                mg::test::require_close(w1.grad(), w2.grad(), tol, tol, "dhead_weight");
                // only the listed rows get a gradient
                auto dh = h1.grad().to(DType::f64).to_vector<double>();
                for (int64_t n = 0; n < B * L; ++n) {
                    bool listed = std::find(pos.begin(), pos.end(), int32_t(n)) != pos.end() && n != 20;
                    double norm = 0;
                    for (int64_t j = 0; j < Dm; ++j) norm += std::abs(dh[size_t(n * Dm + j)]);
                    INFO("row " << n);
                    CHECK((norm > 0) == listed);
                }
            }
        }
    }
}

TEST_CASE("cross_entropy: bad inputs name the op and the shapes", "[cross_entropy][errors]") {
    Tensor z = Tensor::zeros({2, 3, 5});
    Tensor t = Tensor::from_vector(std::vector<int32_t>{0, 1, 5, 2, 3, 4}, {2, 3});
    REQUIRE_ERROR_WITH(cross_entropy(z, t), "cross_entropy", "(2,3) i32 cpu", "holds 5 at flat position 2", "[0, 5)",
                       "(2,3,5) f32 cpu");
    REQUIRE_ERROR_WITH(cross_entropy(z, Tensor::zeros({3, 2}, {DType::i32})), "cross_entropy", "targets is (3,2) i32 cpu",
                       "logits is (2,3,5) f32 cpu", "expected targets (2,3)");
    REQUIRE_ERROR_WITH(cross_entropy(z, Tensor::zeros({2, 3})), "cross_entropy", "targets is (2,3) f32 cpu", "i32");
    REQUIRE_ERROR_WITH(cross_entropy(Tensor::zeros({2, 0}), Tensor::zeros({2}, {DType::i32})), "cross_entropy",
                       "(2,0) f32 cpu", "V >= 1");
    Tensor h = Tensor::zeros({2, 4, 3}), W = Tensor::zeros({7, 3});
    Tensor p = Tensor::from_vector(std::vector<int32_t>{0, 8}, {2}), tt = Tensor::from_vector(std::vector<int32_t>{1, 2}, {2});
    REQUIRE_ERROR_WITH(cross_entropy_indexed(h, W, p, tt), "cross_entropy_indexed", "holds 8 at index 1", "[0, 8)",
                       "(2,4,3) f32 cpu");
    REQUIRE_ERROR_WITH(cross_entropy_indexed(h, Tensor::zeros({7, 4}), p, tt), "cross_entropy_indexed",
                       "hidden is (2,4,3) f32 cpu", "head_weight is (7,4) f32 cpu");
    REQUIRE_ERROR_WITH(cross_entropy_indexed(h, W, p, Tensor::zeros({3}, {DType::i32})), "cross_entropy_indexed",
                       "targets is (3) i32 cpu", "positions is (2) i32 cpu");
    REQUIRE_ERROR_WITH(cross_entropy_indexed(h, W, p.to(DType::f32), tt), "cross_entropy_indexed", "positions is (2) f32 cpu");
}

TEST_CASE("cross_entropy: a bad target on cuda gives a NaN loss and an error at the next call", "[cross_entropy][errors][cuda]") {
    MG_REQUIRE_CUDA();
    Device dev = Device::cuda(0);
    Tensor z = Tensor::randn({3, 4}, {DType::f32, dev});
    Tensor bad = Tensor::from_vector(std::vector<int32_t>{1, 9, kIgnoreIndex}, {3}).to(dev);
    CHECK(std::isnan(cross_entropy(z, bad).item())); // item() synchronises
    Tensor good = Tensor::from_vector(std::vector<int32_t>{0, 1, 2}, {3}).to(dev);
    REQUIRE_ERROR_WITH(cross_entropy(z, good), "cross_entropy", "target 9 at row 1", "cuda:0");
    CHECK(std::isfinite(cross_entropy(z, good).item())); // reported once, then cleared
}
