// tests/test_embedding.cpp: embedding gather and its deterministic scatter-add backward against
// the double references (awkward sizes, repeated ids, one id filling many CUDA chunks), bit-
// identical backward across runs, gradcheck on each device, parity, out-of-range ids.
#include <cmath>

#include "cuda/embedding.h"
#include "ops/embedding.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

// N ids in [0, V); with `hot` > 0, that fraction of positions holds id V / 2 (a padding-like id
// whose positions span many of the CUDA backward's 128-slot chunks).
Tensor make_ids(Shape shape, int64_t V, uint64_t seed, double hot = 0) {
    Generator g(seed);
    int64_t n = numel_of(shape);
    auto u = Tensor::uniform({n}, 0, 1, {DType::f64}, g).to_vector<double>();
    auto r = Tensor::uniform({n}, 0, double(V), {DType::f64}, g).to_vector<double>();
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (size_t i = 0; i < ids.size(); ++i)
        ids[i] = u[i] < hot ? int32_t(V / 2) : std::min(int32_t(V - 1), int32_t(r[i]));
    return Tensor::from_vector(ids, shape);
}

struct Size { int64_t B, L, V, D; double hot; };

} // namespace

TEST_CASE("embedding: forward and backward against the references at awkward sizes", "[embedding]") {
    const Size sizes[] = {{1, 1, 1, 1, 0}, {2, 37, 11, 5, 0}, {3, 129, 1000, 33, 0}, {4, 300, 97, 130, 0.6},
                          {1, 1000, 3, 7, 0}};
    for (const Size& s : sizes) {
        int64_t N = s.B * s.L;
        Tensor ids = make_ids({s.B, s.L}, s.V, uint64_t(N + s.V));
        Generator g(uint64_t(s.D));
        Tensor w = Tensor::randn({s.V, s.D}, {DType::f64}, g);
        Tensor dout = Tensor::randn({s.B, s.L, s.D}, {DType::f64}, g);
        std::vector<double> ref(static_cast<size_t>(N * s.D)), dref(static_cast<size_t>(s.V * s.D));
        embedding_ref<double>(ref.data(), ids.data<int32_t>(), w.data<double>(), N, s.D);
        embedding_backward_ref<double>(dref.data(), dout.data<double>(), ids.data<int32_t>(), N, s.V, s.D);
        Tensor expect = Tensor::from_vector(ref, {s.B, s.L, s.D}), dexpect = Tensor::from_vector(dref, {s.V, s.D});
        std::string what = fmt::format("embedding(B={}, L={}, V={}, D={}, hot={})", s.B, s.L, s.V, s.D, s.hot);
        // the CPU backward kernel writes every element (poisoned output)
        Tensor dw = Tensor::full({s.V, s.D}, NAN, {DType::f64});
        embedding_backward_cpu<double>(dw.data<double>(), dout.data<double>(), ids.data<int32_t>(), N, s.V, s.D);
        // sums of up to ~600 terms in a different association than the reference's
        mg::test::require_close(dw, dexpect, 1e-13, 1e-13, what + " cpu backward kernel");
        for (Device dev : devices()) {
            for (DType dt : {DType::f64, DType::f32}) {
                Tensor wd = w.to(dt).to(dev).detach().set_requires_grad(true);
                Tensor y = embedding(ids.to(dev), wd);
                REQUIRE(y.shape() == Shape{s.B, s.L, s.D});
                // forward: a copy, exact up to the f32 rounding of the table
                mg::test::require_close(y, expect, dt == DType::f32 ? 1e-7 : 0, 0, what + " forward " + dev.str());
                y.backward(dout.to(dt).to(dev));
                // f32: up to ~600 rows summed in f32 (hot id): ~600 * 6e-8 relative to the terms
                double tol = dt == DType::f32 ? 5e-5 : 1e-13;
                mg::test::require_close(wd.grad(), dexpect, tol, tol,
                                        fmt::format("{} backward {} {}", what, dev.str(), dtype_name(dt)));
            }
        }
    }
}

TEST_CASE("embedding: ids of any shape; zero positions give a zero gradient", "[embedding]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor w = Tensor::randn({4, 3}, {DType::f64, dev}).set_requires_grad(true);
            Tensor ids = Tensor::from_vector(std::vector<int32_t>{3, 0, 3}, {3}).to(dev);
            Tensor y = embedding(ids, w);
            REQUIRE(y.shape() == Shape{3, 3});
            mg::test::require_close(y.narrow(0, 0, 1), w.narrow(0, 3, 1), 0, 0, "row 3");
            Tensor none = embedding(Tensor::zeros({2, 0}, {DType::i32, dev}), w);
            REQUIRE(none.shape() == Shape{2, 0, 3});
            sum(none).backward();
            CHECK(w.grad().to_vector<double>() == std::vector<double>(12, 0.0));
        }
    }
}

TEST_CASE("embedding: backward is bit-identical across runs (no float atomics)", "[embedding]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            // 6000 positions, 60% on one id: its run crosses ~28 CUDA chunks
            Tensor ids = make_ids({6, 1000}, 50, 77, 0.6).to(dev);
            Tensor w = Tensor::randn({50, 67}, {DType::f32, dev});
            Tensor dout = Tensor::randn({6, 1000, 67}, {DType::f32, dev});
            std::vector<float> first;
            for (int run = 0; run < 3; ++run) {
                Tensor wr = w.detach().set_requires_grad(true);
                embedding(ids, wr).backward(dout);
                auto g = wr.grad().to_vector<float>();
                if (run == 0) first = g;
                else CHECK(g == first); // exact equality of every bit pattern (no NaN here)
            }
        }
    }
}

TEST_CASE("embedding: bad inputs name the op and the shapes", "[embedding][errors]") {
    Tensor w = Tensor::zeros({5, 3});
    Tensor ids = Tensor::from_vector(std::vector<int32_t>{1, 5, 2}, {3});
    REQUIRE_ERROR_WITH(embedding(ids, w), "embedding", "(3) i32 cpu", "holds 5 at flat position 1", "[0, 5)", "(5,3) f32 cpu");
    REQUIRE_ERROR_WITH(embedding(Tensor::from_vector(std::vector<int32_t>{-1}, {1}), w), "embedding", "holds -1");
    REQUIRE_ERROR_WITH(embedding(Tensor::zeros({3}), w), "embedding", "ids is (3) f32 cpu", "expected dtype i32");
    REQUIRE_ERROR_WITH(embedding(Tensor::zeros({3}, {DType::i32}), Tensor::zeros({15})), "embedding", "(15) f32 cpu",
                       "2-D (V, D)");
    REQUIRE_ERROR_WITH(embedding(Tensor::zeros({3}, {DType::i32}), Tensor::zeros({5, 3}, {DType::i32})), "embedding",
                       "weight is (5,3) i32 cpu");
}

TEST_CASE("embedding: out-of-range ids on cuda give NaN rows and an error at the next call", "[embedding][errors][cuda]") {
    MG_REQUIRE_CUDA();
    Device dev = Device::cuda(0);
    Tensor w = Tensor::randn({5, 3}, {DType::f32, dev});
    Tensor bad = Tensor::from_vector(std::vector<int32_t>{1, 7, 2}, {3}).to(dev);
    Tensor y = embedding(bad, w); // no host sync: the error is recorded, not thrown
    auto v = y.to_vector<float>(); // synchronises
    for (int d = 0; d < 3; ++d) {
        CHECK(std::isnan(v[size_t(3 + d)]));
        CHECK(std::isfinite(v[size_t(d)]));
    }
    Tensor good = Tensor::from_vector(std::vector<int32_t>{0}, {1}).to(dev);
    REQUIRE_ERROR_WITH(embedding(good, w), "embedding", "read id 7 at flat position 1", "cuda:0");
    CHECK(embedding(good, w).shape() == Shape{1, 3}); // the error was reported once and cleared
}
