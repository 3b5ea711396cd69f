// tests/test_attention.cpp: causal (and full) attention. The blocked CPU kernels and the fused
// CUDA kernels against the naive double reference at awkward sizes (L not a multiple of any
// tile, L = 1, Lq < Lk as with a KV cache, odd head dims, Dh = 128), with NaN-poisoned outputs;
// the op's values and gradients on each device in f64 and f32; large scores; bit-identical
// gradients run to run; memory linear in L on the GPU; bad inputs.
#include <cmath>

#include "ops/attention.h"
#ifdef MG_CUDA
#include "cuda/attention.h"
#include "cuda/runtime.h"
#endif
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

struct Size { int64_t BH, Lq, Lk, Dh; bool causal; };

// CPU tiles: 32 queries, 64 keys; CUDA tiles: 64 rows (f32), 32 (f64); 16 columns per thread.
const Size kSizes[] = {
    {1, 1, 1, 1, true},      // one query, one key
    {3, 37, 37, 5, true},    // odd Dh, one partial tile
    {2, 70, 70, 33, true},   // crosses a 64-row tile; Dh just past 32
    {1, 5, 77, 16, true},    // Lq < Lk: the last 5 positions attend a cache of 77
    {2, 129, 129, 64, false},// full attention, 3 tiles
    {1, 65, 200, 128, false},// Lq != Lk without a mask; the largest head dim
    {2, 130, 130, 100, true},// Dh not a multiple of 16 in the widest kernel
};

struct Expected { Tensor out, lse, dq, dk, dv; };

Expected reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Size& s, double scale) {
    std::vector<double> out(size_t(s.BH * s.Lq * s.Dh)), lse(size_t(s.BH * s.Lq)), dq(out.size()),
        dk(size_t(s.BH * s.Lk * s.Dh)), dv(dk.size());
    attention_ref<double>(out.data(), lse.data(), q.data<double>(), k.data<double>(), v.data<double>(), s.BH, s.Lq,
                          s.Lk, s.Dh, s.causal, scale);
    attention_backward_ref<double>(dq.data(), dk.data(), dv.data(), g.data<double>(), q.data<double>(),
                                   k.data<double>(), v.data<double>(), s.BH, s.Lq, s.Lk, s.Dh, s.causal, scale);
    return {Tensor::from_vector(out, {s.BH, s.Lq, s.Dh}), Tensor::from_vector(lse, {s.BH, s.Lq}),
            Tensor::from_vector(dq, {s.BH, s.Lq, s.Dh}), Tensor::from_vector(dk, {s.BH, s.Lk, s.Dh}),
            Tensor::from_vector(dv, {s.BH, s.Lk, s.Dh})};
}

// Kernels called directly with NaN-poisoned outputs, on `dev`, in T; compared with `e`.
template <typename T>
void check_kernels(Device dev, const Tensor& q64, const Tensor& k64, const Tensor& v64, const Tensor& g64,
                   const Size& s, double scale, const Expected& e, double tol, const std::string& what) {
    const DType dt = std::is_same_v<T, float> ? DType::f32 : DType::f64;
    const Options o{dt, dev};
    Tensor q = q64.to(dt).to(dev), k = k64.to(dt).to(dev), v = v64.to(dt).to(dev), g = g64.to(dt).to(dev);
    Tensor out = Tensor::full({s.BH, s.Lq, s.Dh}, NAN, o), lse = Tensor::full({s.BH, s.Lq}, NAN, o);
    Tensor dq = Tensor::full({s.BH, s.Lq, s.Dh}, NAN, o), dk = Tensor::full({s.BH, s.Lk, s.Dh}, NAN, o),
           dv = Tensor::full({s.BH, s.Lk, s.Dh}, NAN, o);
    if (dev.is_cpu()) {
        attention_forward_cpu<T>(out.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), s.BH, s.Lq, s.Lk,
                                 s.Dh, s.causal, scale);
        attention_backward_cpu<T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), g.data<T>(), q.data<T>(), k.data<T>(),
                                  v.data<T>(), out.data<T>(), lse.data<T>(), s.BH, s.Lq, s.Lk, s.Dh, s.causal, scale);
    }
#ifdef MG_CUDA
    else {
        cuda::attention_forward<T>(out.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), s.BH, s.Lq,
                                   s.Lk, s.Dh, s.causal, scale);
        const size_t bytes = cuda::attention_backward_workspace(s.BH, s.Lq, sizeof(T));
        Tensor ws = Tensor::full({int64_t(bytes / sizeof(T)) + 1}, NAN, o);
        cuda::attention_backward<T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), g.data<T>(), q.data<T>(), k.data<T>(),
                                    v.data<T>(), out.data<T>(), lse.data<T>(), ws.raw_data(), s.BH, s.Lq, s.Lk, s.Dh,
                                    s.causal, scale);
    }
#endif
    const std::string tag = fmt::format("{} {} {} kernels", what, dev.str(), dtype_name(dt));
    mg::test::require_close(out, e.out, tol, tol, tag + " out");
    mg::test::require_close(lse, e.lse, tol, tol, tag + " lse");
    mg::test::require_close(dq, e.dq, tol, tol, tag + " dq");
    mg::test::require_close(dk, e.dk, tol, tol, tag + " dk");
    mg::test::require_close(dv, e.dv, tol, tol, tag + " dv");
}

} // namespace

TEST_CASE("attention: kernels against the naive reference at awkward sizes", "[attention]") {
    for (const Size& s : kSizes) {
        Generator gen(uint64_t(s.BH * 1000 + s.Lq * 7 + s.Lk + s.Dh));
        Tensor q = Tensor::randn({s.BH, s.Lq, s.Dh}, {DType::f64}, gen), k = Tensor::randn({s.BH, s.Lk, s.Dh}, {DType::f64}, gen);
        Tensor v = Tensor::randn({s.BH, s.Lk, s.Dh}, {DType::f64}, gen), g = Tensor::randn({s.BH, s.Lq, s.Dh}, {DType::f64}, gen);
        const double scale = 1.0 / std::sqrt(double(s.Dh));
        const Expected e = reference(q, k, v, g, s, scale);
        const std::string what = fmt::format("attention(BH={}, Lq={}, Lk={}, Dh={}, {})", s.BH, s.Lq, s.Lk, s.Dh,
                                             s.causal ? "causal" : "full");
        for (Device dev : devices()) {
            check_kernels<double>(dev, q, k, v, g, s, scale, e, 1e-11, what);
            // f32: sums of up to 200 terms of O(1) and exp/log of O(1) scores
            check_kernels<float>(dev, q, k, v, g, s, scale, e, 2e-4, what);
        }
    }
}

TEST_CASE("attention: the op's values and gradients on each device, (B, H, L, Dh) layout", "[attention]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f64, DType::f32}) {
            SECTION(fmt::format("{} {}", dev.str(), dtype_name(dt))) {
                const Size s{6, 45, 45, 24, true}; // B = 2, H = 3
                Generator gen(11);
                Tensor q = Tensor::randn({2, 3, 45, 24}, {DType::f64}, gen), k = Tensor::randn({2, 3, 45, 24}, {DType::f64}, gen);
                Tensor v = Tensor::randn({2, 3, 45, 24}, {DType::f64}, gen), g = Tensor::randn({2, 3, 45, 24}, {DType::f64}, gen);
                const Expected e = reference(q, k, v, g, s, 0.3);
                auto leaf = [&](const Tensor& t) { return t.to(dt).to(dev).detach().set_requires_grad(true); };
                Tensor ql = leaf(q), kl = leaf(k), vl = leaf(v);
                Tensor y = attention(ql, kl, vl, true, 0.3);
                CHECK(y.shape() == Shape{2, 3, 45, 24});
                y.backward(g.to(dt).to(dev));
                const double tol = dt == DType::f32 ? 1e-4 : 1e-11;
                mg::test::require_close(y.reshape({6, 45, 24}), e.out, tol, tol, "out");
                mg::test::require_close(ql.grad().reshape({6, 45, 24}), e.dq, tol, tol, "dq");
                mg::test::require_close(kl.grad().reshape({6, 45, 24}), e.dk, tol, tol, "dk");
                mg::test::require_close(vl.grad().reshape({6, 45, 24}), e.dv, tol, tol, "dv");
            }
        }
    }
}

TEST_CASE("attention: scores of several hundred do not overflow (online softmax rescaling)", "[attention]") {
    const Size s{2, 67, 67, 8, true};
    Generator gen(3);
    // |S| up to ~600: exp(S) alone would overflow even in double
    Tensor q = Tensor::randn({2, 67, 8}, {DType::f64}, gen) * 15.0, k = Tensor::randn({2, 67, 8}, {DType::f64}, gen) * 15.0;
    Tensor v = Tensor::randn({2, 67, 8}, {DType::f64}, gen), g = Tensor::randn({2, 67, 8}, {DType::f64}, gen);
    const Expected e = reference(q, k, v, g, s, 1.0);
    for (Device dev : devices()) {
        check_kernels<double>(dev, q, k, v, g, s, 1.0, e, 1e-9, "large scores");
        // f32: S ~ 600 carries an absolute rounding error ~ 600 * 2^-24 into P
        check_kernels<float>(dev, q, k, v, g, s, 1.0, e, 2e-3, "large scores");
    }
}

TEST_CASE("attention: one query against a cache equals the last row of the full causal attention", "[attention]") {
    for (Device dev : devices()) {
        Generator gen(5);
        const Options o{DType::f64, dev};
        Tensor q = Tensor::randn({2, 2, 23, 16}, o, gen), k = Tensor::randn({2, 2, 23, 16}, o, gen),
               v = Tensor::randn({2, 2, 23, 16}, o, gen);
        Tensor full = attention(q, k, v);
        for (int64_t t : {0, 7, 22}) { // query t against keys 0..t
            Tensor one = attention(q.narrow(2, t, 1), k.narrow(2, 0, t + 1), v.narrow(2, 0, t + 1));
            mg::test::require_close(one, full.narrow(2, t, 1), 1e-13, 1e-13, fmt::format("{} query {}", dev.str(), t));
        }
    }
}

TEST_CASE("attention: gradients are bit-identical run to run", "[attention]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(8);
            const Options o{DType::f32, dev};
            Tensor q = Tensor::randn({3, 300, 64}, o, gen), k = Tensor::randn({3, 300, 64}, o, gen),
                   v = Tensor::randn({3, 300, 64}, o, gen), g = Tensor::randn({3, 300, 64}, o, gen);
            std::vector<float> first[3];
            for (int run = 0; run < 3; ++run) {
                Tensor ql = q.detach().set_requires_grad(true), kl = k.detach().set_requires_grad(true),
                       vl = v.detach().set_requires_grad(true);
                attention(ql, kl, vl).backward(g);
                const Tensor grads[3] = {ql.grad(), kl.grad(), vl.grad()};
                for (int i = 0; i < 3; ++i) {
                    auto x = grads[i].to_vector<float>();
                    if (run == 0) first[i] = x;
                    else CHECK(x == first[i]);
                }
            }
        }
    }
}

#ifdef MG_CUDA
TEST_CASE("attention: GPU memory grows linearly in L (no L x L matrix)", "[attention][cuda]") {
    MG_REQUIRE_CUDA();
    const Options o{DType::f32, Device::cuda(0)};
    Generator gen(9);
    // an L x L f32 score matrix per head would be 2 * 4096^2 * 4 B = 128 MiB; q, k, v, out and
    // their gradients are 2 * 4096 * 64 * 4 B = 2 MiB each
    const int64_t L = 4096;
    Tensor q = Tensor::randn({1, 2, L, 64}, o, gen).set_requires_grad(true);
    Tensor k = Tensor::randn({1, 2, L, 64}, o, gen).set_requires_grad(true);
    Tensor v = Tensor::randn({1, 2, L, 64}, o, gen).set_requires_grad(true);
    Tensor g = Tensor::randn({1, 2, L, 64}, o, gen);
    cuda::synchronize(0);
    const size_t before = cuda::memory_stats(0).allocated;
    cuda::reset_peak_memory(0);
    attention(q, k, v).backward(g);
    cuda::synchronize(0);
    const size_t extra = cuda::memory_stats(0).peak_allocated - before;
    INFO("peak extra bytes " << extra);
    CHECK(extra < size_t(16) << 20); // out, lse, D and three gradients: about 8 MiB
}
#endif

TEST_CASE("attention: bad inputs name the op, the shapes and what was expected", "[attention][errors]") {
    Tensor q = Tensor::zeros({2, 3, 8, 4}), k = Tensor::zeros({2, 3, 8, 4});
    REQUIRE_ERROR_WITH(attention(q, Tensor::zeros({2, 3, 8, 5}), k), "attention", "k (2,3,8,5) f32 cpu", "q's Dh");
    REQUIRE_ERROR_WITH(attention(q, k, Tensor::zeros({2, 3, 9, 4})), "attention", "v (2,3,9,4) f32 cpu", "same shape");
    REQUIRE_ERROR_WITH(attention(q, Tensor::zeros({2, 4, 8, 4}), Tensor::zeros({2, 4, 8, 4})), "attention",
                       "leading dim 1", "q (2,3,8,4) f32 cpu");
    REQUIRE_ERROR_WITH(attention(q, Tensor::zeros({2, 3, 5, 4}), Tensor::zeros({2, 3, 5, 4})), "attention",
                       "Lk >= Lq", "k (2,3,5,4) f32 cpu");
    REQUIRE_ERROR_WITH(attention(q, Tensor::zeros({2, 3, 0, 4}), Tensor::zeros({2, 3, 0, 4}), false), "attention",
                       "Lk >= 1");
    REQUIRE_ERROR_WITH(attention(q, k.to(DType::f64), k), "attention", "(2,3,8,4) f64 cpu", "same dtype");
    REQUIRE_ERROR_WITH(attention(Tensor::zeros({4}), Tensor::zeros({4}), Tensor::zeros({4})), "attention",
                       "q (4) f32 cpu", ">= 2");
    REQUIRE_ERROR_WITH(attention(q, k, k, true, NAN), "attention", "scale = nan");
    REQUIRE_ERROR_WITH(attention(Tensor::zeros({2, 4}, {DType::i32}), Tensor::zeros({2, 4}, {DType::i32}),
                                 Tensor::zeros({2, 4}, {DType::i32})), "attention", "(2,4) i32 cpu");
#ifdef MG_CUDA
    if (cuda::available()) {
        Tensor big = Tensor::zeros({1, 2, 160}, {DType::f32, Device::cuda(0)});
        REQUIRE_ERROR_WITH(attention(big, big, big), "attention", "Dh = 160", "Dh <= 128", "cuda:0");
    }
#endif
}
