// tests/test_rmsnorm.cpp: RMSNorm and the fused residual add-norm: kernels against the double
// references at awkward sizes (many rows for the dweight groups), the fused form against the
// composite, determinism of dweight, gradcheck on each device, parity, bad inputs.
#include <cmath>

#include "ops/rmsnorm.h"
#ifdef MG_CUDA
#include "cuda/rmsnorm.h"
#include "cuda/runtime.h"
#endif
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

struct Size { int64_t B, L, D; };

} // namespace

TEST_CASE("rmsnorm: forward and backward against the references at awkward sizes", "[rmsnorm]") {
    // N = B*L rows: 1, 74, 1, 387, 18000 (the last fills the CUDA dweight's 1024 row groups);
    // D = 1500 and 2500 take CUDA teams of 64 and 128 threads per row (several warps, 4 and 2
    // rows per block, the last block's second team past the last row); the rest one warp per row
    const Size sizes[] = {{1, 1, 1}, {2, 37, 5}, {1, 1, 768}, {3, 129, 33}, {4, 4500, 17}, {1, 7, 1500}, {3, 1, 2500}};
    const double eps = 1e-5;
    for (const Size& s : sizes) {
        int64_t N = s.B * s.L, D = s.D;
        Generator g(uint64_t(N * 7 + D));
        Tensor x = Tensor::randn({s.B, s.L, D}, {DType::f64}, g), w = Tensor::uniform({D}, 0.5, 1.5, {DType::f64}, g);
        Tensor dy = Tensor::randn({s.B, s.L, D}, {DType::f64}, g);
        std::vector<double> y(static_cast<size_t>(N * D)), dx(static_cast<size_t>(N * D)), dw(static_cast<size_t>(D));
        rmsnorm_ref<double>(y.data(), x.data<double>(), w.data<double>(), N, D, eps);
        rmsnorm_backward_ref<double>(dx.data(), dw.data(), dy.data<double>(), x.data<double>(), w.data<double>(), N, D, eps);
        Tensor ey = Tensor::from_vector(y, {s.B, s.L, D}), edx = Tensor::from_vector(dx, {s.B, s.L, D}),
               edw = Tensor::from_vector(dw, {D});
        std::string what = fmt::format("rmsnorm(B={}, L={}, D={})", s.B, s.L, D);
        {   // the CPU kernels write every element (poisoned outputs)
            Tensor out = Tensor::full({s.B, s.L, D}, NAN, {DType::f64}), rstd = Tensor::full({N}, NAN, {DType::f64});
            rmsnorm_forward_cpu<double>(out.data<double>(), nullptr, rstd.data<double>(), x.data<double>(), nullptr,
                                        w.data<double>(), N, D, eps);
            mg::test::require_close(out, ey, 1e-13, 1e-13, what + " cpu forward kernel");
            Tensor gx = Tensor::full({s.B, s.L, D}, NAN, {DType::f64}), gw = Tensor::full({D}, NAN, {DType::f64});
            rmsnorm_backward_cpu<double>(gx.data<double>(), gw.data<double>(), dy.data<double>(), nullptr, x.data<double>(),
                                         w.data<double>(), rstd.data<double>(), N, D);
            mg::test::require_close(gx, edx, 1e-12, 1e-12, what + " cpu backward kernel dx");
            mg::test::require_close(gw, edw, 1e-11, 1e-11, what + " cpu backward kernel dweight");
        }
#ifdef MG_CUDA
        if (cuda::available()) { // the CUDA kernels write every element too (NaN-poisoned outputs)
            const Options o{DType::f64, Device::cuda(0)};
            Tensor xg = x.to(Device::cuda(0)), wg = w.to(Device::cuda(0)), dyg = dy.to(Device::cuda(0));
            Tensor out = Tensor::full({s.B, s.L, D}, NAN, o), rstd = Tensor::full({N}, NAN, o);
            cuda::rmsnorm_forward<double>(out.data<double>(), nullptr, rstd.data<double>(), xg.data<double>(), nullptr,
                                          wg.data<double>(), N, D, eps);
            mg::test::require_close(out.to(Device::cpu()), ey, 1e-13, 1e-13, what + " cuda forward kernel");
            Tensor gx = Tensor::full({s.B, s.L, D}, NAN, o), gw = Tensor::full({D}, NAN, o);
            const size_t bytes = cuda::rmsnorm_backward_workspace(N, D, sizeof(double));
            Tensor ws = Tensor::full({int64_t(bytes / sizeof(double))}, NAN, o);
            cuda::rmsnorm_backward<double>(gx.data<double>(), gw.data<double>(), dyg.data<double>(), nullptr,
                                           xg.data<double>(), wg.data<double>(), rstd.data<double>(), ws.raw_data(), N, D);
            mg::test::require_close(gx.to(Device::cpu()), edx, 1e-12, 1e-12, what + " cuda backward kernel dx");
            mg::test::require_close(gw.to(Device::cpu()), edw, 1e-11, 1e-11, what + " cuda backward kernel dweight");
        }
#endif
        for (Device dev : devices()) {
            for (DType dt : {DType::f64, DType::f32}) {
                auto leaf = [&](const Tensor& t) { return t.to(dt).to(dev).detach().set_requires_grad(true); };
                Tensor xd = leaf(x), wd = leaf(w);
                Tensor yd = rmsnorm(xd, wd, eps);
                yd.backward(dy.to(dt).to(dev));
                std::string tag = fmt::format("{} {} {}", what, dev.str(), dtype_name(dt));
                // f32: sums over D <= 768 terms (row) and over N <= 9000 rows (dweight, whose
                // terms are O(1) and sum to O(sqrt N)), accumulated in f32 on CUDA
                double tol = dt == DType::f32 ? 1e-5 : 1e-12, tolw = dt == DType::f32 ? 1e-4 : 1e-11;
                mg::test::require_close(yd, ey, tol, tol, tag + " y");
                mg::test::require_close(xd.grad(), edx, tol, tol, tag + " dx");
                mg::test::require_close(wd.grad(), edw, tolw, tolw, tag + " dweight");
            }
        }
    }
}

TEST_CASE("rmsnorm_residual: equals x + residual then rmsnorm, values and all gradients", "[rmsnorm]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f64, DType::f32}) {
            SECTION(fmt::format("{} {}", dev.str(), dtype_name(dt))) {
                Generator g(5);
                Options o{dt, dev};
                Tensor x = Tensor::randn({2, 13, 9}, o, g), res = Tensor::randn({2, 13, 9}, o, g);
                Tensor w = Tensor::uniform({9}, 0.5, 1.5, o, g);
                Tensor a = Tensor::randn({2, 13, 9}, o, g), b = Tensor::randn({2, 13, 9}, o, g);
                auto leaves = [&] {
                    return std::vector<Tensor>{x.detach().set_requires_grad(true), res.detach().set_requires_grad(true),
                                               w.detach().set_requires_grad(true)};
                };
                // the loss uses both outputs, so dL/dh from h's own consumers flows too
                auto fused = leaves(), comp = leaves();
                auto r = rmsnorm_residual(fused[0], fused[1], fused[2]);
                sum(r.normed * a + r.residual * b).backward();
                Tensor h = comp[0] + comp[1];
                Tensor yc = rmsnorm(h, comp[2]);
                sum(yc * a + h * b).backward();
                double tol = dt == DType::f32 ? 1e-5 : 1e-13; // the same kernels on the same h
                mg::test::require_close(r.normed, yc, tol, tol, "normed");
                mg::test::require_close(r.residual, h, 0, 0, "residual = x + residual, exactly");
                const char* names[] = {"dx", "dresidual", "dweight"};
                for (int i = 0; i < 3; ++i)
                    mg::test::require_close(fused[size_t(i)].grad(), comp[size_t(i)].grad(), tol, tol, names[i]);
                // no residual: h is x itself
                auto first = rmsnorm_residual(x, Tensor(), w);
                CHECK(first.residual.same(x));
                mg::test::require_close(first.normed, rmsnorm(x, w), 0, 0, "no residual");
            }
        }
    }
}

TEST_CASE("rmsnorm: dweight is bit-identical across runs", "[rmsnorm]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator g(8);
            Tensor x = Tensor::randn({5000, 65}, {DType::f32, dev}, g), w = Tensor::randn({65}, {DType::f32, dev}, g);
            Tensor dy = Tensor::randn({5000, 65}, {DType::f32, dev}, g);
            std::vector<float> first;
            for (int run = 0; run < 3; ++run) {
                Tensor wr = w.detach().set_requires_grad(true);
                rmsnorm(x, wr).backward(dy);
                auto v = wr.grad().to_vector<float>();
                if (run == 0) first = v;
                else CHECK(v == first);
            }
        }
    }
}

TEST_CASE("rmsnorm: bad inputs name the op and the shapes", "[rmsnorm][errors]") {
    Tensor x = Tensor::zeros({2, 3, 8}), w = Tensor::ones({8});
    REQUIRE_ERROR_WITH(rmsnorm(x, Tensor::ones({7})), "rmsnorm", "weight is (7) f32 cpu", "x is (2,3,8) f32 cpu");
    REQUIRE_ERROR_WITH(rmsnorm(x, Tensor::ones({8, 1})), "rmsnorm", "weight is (8,1) f32 cpu");
    REQUIRE_ERROR_WITH(rmsnorm(x, w.to(DType::f64)), "rmsnorm", "(8) f64 cpu", "same dtype");
    REQUIRE_ERROR_WITH(rmsnorm(x, w, -1.0), "rmsnorm", "eps = -1", "(2,3,8) f32 cpu");
    REQUIRE_ERROR_WITH(rmsnorm(Tensor::zeros({4}, {DType::i32}), Tensor::ones({4})), "rmsnorm", "(4) i32 cpu");
    REQUIRE_ERROR_WITH(rmsnorm_residual(x, Tensor::zeros({2, 8}), w), "rmsnorm_residual", "residual is (2,8) f32 cpu",
                       "x is (2,3,8) f32 cpu", "same shape");
    REQUIRE_ERROR_WITH(rmsnorm_residual(x, Tensor(), Tensor::ones({3})), "rmsnorm_residual", "weight is (3) f32 cpu");
}
