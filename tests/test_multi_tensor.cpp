// tests/test_multi_tensor.cpp: the tensor-list ops of ops/multi_tensor.h (AdamW, clamp, the
// non-finite scan) and tensor/runtime.h's AsyncRead, on lists long enough to need several CUDA
// launches (more than cuda::kSlotsPerLaunch = 24 tensors), with mixed dtypes and sizes (0, 1,
// odd, several chunks), against plain loops in double.
#include <cmath>
#include <vector>

#include "tests/helpers.h"
#include "train/optim.h"

using namespace mg;
using namespace mg::test;

namespace {

// Sizes of the 30 tensors: empty, one element, odd, and more than one CUDA chunk (1024).
int64_t size_of(int i) {
    static const int64_t sizes[] = {0, 1, 7, 33, 1024, 1025, 3000, 5};
    return sizes[i % 8];
}
DType mixed_dtype(int i) { return i % 3 == 0 ? DType::f64 : DType::f32; }

} // namespace

TEST_CASE("multi_tensor: adamw_step_ matches the double reference over 30 tensors of mixed dtypes", "[multi_tensor]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(11);
            train::AdamWOptions o;
            o.lr = 3e-3;
            std::vector<AdamWTensors> items;
            std::vector<std::vector<double>> rp, rm, rv, rg;
            for (int i = 0; i < 30; ++i) {
                const int64_t n = size_of(i);
                Options opt{mixed_dtype(i), dev};
                Tensor p = Tensor::randn({n}, opt, gen), m = Tensor::randn({n}, opt, gen) * 0.1,
                       v = Tensor::uniform({n}, 0.0, 0.01, opt, gen), g = Tensor::randn({n}, opt, gen);
                rp.push_back(p.to(DType::f64).to_vector<double>());
                rm.push_back(m.to(DType::f64).to_vector<double>());
                rv.push_back(v.to(DType::f64).to_vector<double>());
                rg.push_back(g.to(DType::f64).to_vector<double>());
                items.push_back({p, m, v, g, train::adamw_coef(o, 3, i % 2 == 0)});
            }
            adamw_step_(items);
            for (int i = 0; i < 30; ++i) {
                // the reference continues from step 2, so its one step is t = 3 like the coefficients
                train::adamw_ref(rp[i], rm[i], rv[i], {rg[i]}, o, i % 2 == 0, 2);
                const double tol = mixed_dtype(i) == DType::f64 ? 1e-12 : 1e-5;
                const int64_t n = size_of(i);
                Options cpu64{DType::f64, Device::cpu()};
                require_close(items[i].p, Tensor::from_vector(rp[i], {n}, cpu64), tol, tol, fmt::format("p[{}]", i));
                require_close(items[i].m, Tensor::from_vector(rm[i], {n}, cpu64), tol, tol, fmt::format("m[{}]", i));
                require_close(items[i].v, Tensor::from_vector(rv[i], {n}, cpu64), tol, tol, fmt::format("v[{}]", i));
            }
        }
    }
}

TEST_CASE("multi_tensor: a non-zero skip word leaves a device's tensors unchanged", "[multi_tensor]") {
    MG_REQUIRE_CUDA();
    Generator gen(3);
    Options opt{DType::f32, Device::cuda(0)};
    Tensor p = Tensor::randn({40}, opt, gen), m = Tensor::zeros({40}, opt), v = Tensor::zeros({40}, opt),
           g = Tensor::randn({40}, opt, gen);
    const std::vector<float> before = p.to_vector<float>();
    train::AdamWOptions o;
    Tensor word = Tensor::from_vector(std::vector<int32_t>{1, 0}, {2}, {DType::i32, Device::cuda(0)});
    adamw_step_({{p, m, v, g, train::adamw_coef(o, 1, true)}}, {word});
    CHECK(p.to_vector<float>() == before);
    Tensor zero = Tensor::zeros({2}, {DType::i32, Device::cuda(0)});
    adamw_step_({{p, m, v, g, train::adamw_coef(o, 1, true)}}, {zero});
    CHECK(p.to_vector<float>() != before);
}

TEST_CASE("multi_tensor: clamp_ clips every tensor and keeps NaN", "[multi_tensor]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(5);
            std::vector<Tensor> xs;
            for (int i = 0; i < 30; ++i) xs.push_back(Tensor::randn({size_of(i)}, {mixed_dtype(i), dev}, gen) * 3.0);
            std::vector<float> with_nan = {NAN, 5.f, -5.f, 0.5f};
            xs.push_back(Tensor::from_vector(with_nan, {4}, {DType::f32, dev}));
            xs.push_back(Tensor());
            std::vector<std::vector<double>> want;
            for (const Tensor& x : xs) {
                std::vector<double> w = x.defined() ? x.to(DType::f64).to_vector<double>() : std::vector<double>();
                for (double& e : w) e = std::isnan(e) ? e : std::min(1.5, std::max(-1.5, e));
                want.push_back(w);
            }
            clamp_(xs, 1.5);
            for (size_t i = 0; i + 1 < xs.size(); ++i) {
                std::vector<double> got = xs[i].to(DType::f64).to_vector<double>();
                REQUIRE(got.size() == want[i].size());
                for (size_t k = 0; k < got.size(); ++k) {
                    INFO("tensor " << i << " element " << k);
                    if (std::isnan(want[i][k])) CHECK(std::isnan(got[k]));
                    else CHECK(got[k] == want[i][k]);
                }
            }
        }
    }
}

TEST_CASE("multi_tensor: NonfiniteScan counts and locates every tensor's non-finite values", "[multi_tensor]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(9);
            std::vector<Tensor> xs;
            std::vector<NonfiniteScan::Finding> want;
            for (int i = 0; i < 30; ++i) {
                const int64_t n = size_of(i);
                std::vector<double> v = Tensor::randn({n}, {DType::f64, Device::cpu()}, gen).to_vector<double>();
                NonfiniteScan::Finding f;
                if (n >= 7 && i % 4 != 0) { // plant: -Inf late, NaN in the middle, +Inf early
                    v[size_t(n - 1)] = -INFINITY;
                    v[size_t(n / 2)] = NAN;
                    v[2] = i % 4 == 1 ? INFINITY : v[2];
                    f.count = i % 4 == 1 ? 3 : 2;
                    f.first = i % 4 == 1 ? 2 : n / 2;
                    f.value = i % 4 == 1 ? INFINITY : NAN;
                }
                xs.push_back(Tensor::from_vector(v, {n}, {DType::f64, Device::cpu()}).to(mixed_dtype(i)).to(dev));
                want.push_back(f);
            }
            xs.push_back(Tensor());
            want.push_back({});
            NonfiniteScan scan(xs);
            const auto& got = scan.findings();
            REQUIRE(got.size() == want.size());
            for (size_t i = 0; i < got.size(); ++i) {
                INFO("tensor " << i);
                CHECK(got[i].count == want[i].count);
                CHECK(got[i].first == want[i].first);
                if (want[i].count) {
                    if (std::isnan(want[i].value)) CHECK(std::isnan(got[i].value));
                    else CHECK(got[i].value == want[i].value);
                }
            }
            CHECK(scan.skip_words().size() == (dev.is_cuda() ? 1u : 0u));
            if (dev.is_cuda()) CHECK(scan.skip_words()[0].to_vector<int32_t>()[0] != 0); // "any" is set
        }
    }
}

TEST_CASE("multi_tensor: bad lists are refused with the op, the position and the tensor", "[multi_tensor]") {
    Tensor f = Tensor::zeros({4, 3}), i32 = Tensor::zeros({3}, {DType::i32, Device::cpu()});
    REQUIRE_ERROR_WITH(clamp_({f, f.transpose(0, 1)}, 1.0), "clamp_", "xs[1]", "(3,4) f32 cpu", "not contiguous");
    REQUIRE_ERROR_WITH(clamp_({f}, 0.0), "clamp_", "c is 0", "expected > 0");
    REQUIRE_ERROR_WITH(NonfiniteScan({f, i32}), "NonfiniteScan", "xs[1]", "(3) i32 cpu", "expected f32 or f64");
    Tensor p = Tensor::zeros({3}), m = Tensor::zeros({4});
    REQUIRE_ERROR_WITH(adamw_step_({{p, m, p, p, {}}}), "adamw_step_", "item 0", "(3) f32 cpu", "but m is (4) f32 cpu");
    REQUIRE_ERROR_WITH(adamw_step_({{p, p, p, p, {}}}, {Tensor::zeros({2}, {DType::i32, Device::cpu()})}), "adamw_step_",
                       "skip word is (2) i32 cpu", "CUDA i32");
}

TEST_CASE("runtime: AsyncRead returns a tensor's bytes on every device; bad reads are refused", "[tensor]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor x = Tensor::from_vector(std::vector<float>{1.5f, -2.f, 3.25f}, {3}, {DType::f32, dev});
            AsyncRead r(x);
            REQUIRE(r.valid());
            const float* h = r.wait_as<float>();
            CHECK(h[0] == 1.5f);
            CHECK(h[1] == -2.f);
            CHECK(h[2] == 3.25f);
            AsyncRead moved = std::move(r);
            CHECK(moved.wait_as<float>()[2] == 3.25f);
        }
    }
    REQUIRE_ERROR_WITH(AsyncRead(Tensor::zeros({2, 3}).transpose(0, 1)), "AsyncRead", "(3,2) f32 cpu", "contiguous");
    AsyncRead none;
    REQUIRE_ERROR_WITH(none.wait(), "AsyncRead::wait", "nothing was read");
    CHECK(device_name(Device::cpu()) == "cpu");
    REQUIRE_ERROR_WITH(memory_stats(Device::cpu()), "memory_stats", "cpu", "not a CUDA device");
}
