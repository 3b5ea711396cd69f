// tests/test_layernorm.cpp: LayerNorm: kernels against the double references at awkward sizes
// (many rows for the dweight/dbias groups, D past 1024 for multi-warp teams), no bias against a
// zero bias, determinism of dweight and dbias, gradients on each device, no rows, bad inputs.
#include <algorithm>
#include <cmath>

#include "ops/layernorm.h"
#ifdef MG_CUDA
#include "cuda/layernorm.h"
#include "cuda/runtime.h"
#endif
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

struct Size { int64_t B, L, D; };

} // namespace

TEST_CASE("layer_norm: forward and backward against the references at awkward sizes", "[layernorm]") {
    // N = B*L rows: 1, 74, 1, 387, 18000 (the last fills the CUDA dweight's 1024 row groups);
    // D = 1500 and 2500 take CUDA teams of 64 and 128 threads per row (several warps, 4 and 2
    // rows per block, the last block's second team past the last row); the rest one warp per row.
    // x is centred at 3, so the mean matters (and the variance is taken about it).
    const Size sizes[] = {{1, 1, 1}, {2, 37, 5}, {1, 1, 768}, {3, 129, 33}, {4, 4500, 17}, {1, 7, 1500}, {3, 1, 2500}};
    const double eps = 1e-5;
    for (const Size& s : sizes) {
        int64_t N = s.B * s.L, D = s.D;
        Generator g(uint64_t(N * 7 + D));
        Tensor x = Tensor::randn({s.B, s.L, D}, {DType::f64}, g) + 3.0;
        Tensor w = Tensor::uniform({D}, 0.5, 1.5, {DType::f64}, g), b = Tensor::randn({D}, {DType::f64}, g);
        Tensor dy = Tensor::randn({s.B, s.L, D}, {DType::f64}, g);
        std::vector<double> y(static_cast<size_t>(N * D)), dx(static_cast<size_t>(N * D)), dw(static_cast<size_t>(D)),
            db(static_cast<size_t>(D));
        layer_norm_ref<double>(y.data(), x.data<double>(), w.data<double>(), b.data<double>(), N, D, eps);
        layer_norm_backward_ref<double>(dx.data(), dw.data(), db.data(), dy.data<double>(), x.data<double>(),
                                        w.data<double>(), N, D, eps);
        Tensor ey = Tensor::from_vector(y, {s.B, s.L, D}), edx = Tensor::from_vector(dx, {s.B, s.L, D}),
               edw = Tensor::from_vector(dw, {D}), edb = Tensor::from_vector(db, {D});
        std::string what = fmt::format("layer_norm(B={}, L={}, D={})", s.B, s.L, D);
        double rmax = 0; // the largest 1 / sqrt(var + eps) over the rows
        for (int64_t n = 0; n < N; ++n) {
            double mu = 0, var = 0;
            for (int64_t j = 0; j < D; ++j) mu += x.data<double>()[n * D + j] / double(D);
            for (int64_t j = 0; j < D; ++j) var += std::pow(x.data<double>()[n * D + j] - mu, 2) / double(D);
            rmax = std::max(rmax, 1.0 / std::sqrt(var + eps));
        }
        {   // the CPU kernels write every element (poisoned outputs)
            Tensor out = Tensor::full({s.B, s.L, D}, NAN, {DType::f64});
            Tensor mean = Tensor::full({N}, NAN, {DType::f64}), rstd = Tensor::full({N}, NAN, {DType::f64});
            layer_norm_forward_cpu<double>(out.data<double>(), mean.data<double>(), rstd.data<double>(),
                                           x.data<double>(), w.data<double>(), b.data<double>(), N, D, eps);
            mg::test::require_close(out, ey, 1e-13, 1e-13, what + " cpu forward kernel");
            Tensor gx = Tensor::full({s.B, s.L, D}, NAN, {DType::f64});
            Tensor gw = Tensor::full({D}, NAN, {DType::f64}), gb = Tensor::full({D}, NAN, {DType::f64});
            layer_norm_backward_cpu<double>(gx.data<double>(), gw.data<double>(), gb.data<double>(), dy.data<double>(),
                                            x.data<double>(), w.data<double>(), mean.data<double>(),
                                            rstd.data<double>(), N, D);
            mg::test::require_close(gx, edx, 1e-12, 1e-12, what + " cpu backward kernel dx");
            mg::test::require_close(gw, edw, 1e-11, 1e-11, what + " cpu backward kernel dweight");
            mg::test::require_close(gb, edb, 1e-11, 1e-11, what + " cpu backward kernel dbias");
        }
#ifdef MG_CUDA
        if (cuda::available()) { // the CUDA kernels write every element too (NaN-poisoned outputs)
            const Options o{DType::f64, Device::cuda(0)};
            Tensor xg = x.to(Device::cuda(0)), wg = w.to(Device::cuda(0)), bg = b.to(Device::cuda(0));
            Tensor dyg = dy.to(Device::cuda(0));
            Tensor out = Tensor::full({s.B, s.L, D}, NAN, o), mean = Tensor::full({N}, NAN, o),
                   rstd = Tensor::full({N}, NAN, o);
            cuda::layer_norm_forward<double>(out.data<double>(), mean.data<double>(), rstd.data<double>(),
                                             xg.data<double>(), wg.data<double>(), bg.data<double>(), N, D, eps);
            mg::test::require_close(out.to(Device::cpu()), ey, 1e-13, 1e-13, what + " cuda forward kernel");
            Tensor gx = Tensor::full({s.B, s.L, D}, NAN, o), gw = Tensor::full({D}, NAN, o),
                   gb = Tensor::full({D}, NAN, o);
            const size_t bytes = cuda::layer_norm_backward_workspace(N, D, sizeof(double));
            Tensor ws = Tensor::full({int64_t(bytes / sizeof(double))}, NAN, o);
            cuda::layer_norm_backward<double>(gx.data<double>(), gw.data<double>(), gb.data<double>(),
                                              dyg.data<double>(), xg.data<double>(), wg.data<double>(),
                                              mean.data<double>(), rstd.data<double>(), ws.raw_data(), N, D);
            mg::test::require_close(gx.to(Device::cpu()), edx, 1e-12, 1e-12, what + " cuda backward kernel dx");
            mg::test::require_close(gw.to(Device::cpu()), edw, 1e-11, 1e-11, what + " cuda backward kernel dweight");
            mg::test::require_close(gb.to(Device::cpu()), edb, 1e-11, 1e-11, what + " cuda backward kernel dbias");
        }
#endif
        for (Device dev : devices()) {
            for (DType dt : {DType::f64, DType::f32}) {
                auto leaf = [&](const Tensor& t) { return t.to(dt).to(dev).detach().set_requires_grad(true); };
                Tensor xd = leaf(x), wd = leaf(w), bd = leaf(b);
                Tensor yd = layer_norm(xd, wd, bd, eps);
                yd.backward(dy.to(dt).to(dev));
                std::string tag = fmt::format("{} {} {}", what, dev.str(), dtype_name(dt));
                // f32: sums over D <= 2500 terms (row) and over N <= 18000 rows (dweight, dbias,
                // whose terms are O(1) and sum to O(sqrt N)), accumulated in f32 on CUDA; x in f32
                // carries its rounding at 3 (~2e-7) into xh
                double tol = dt == DType::f32 ? 1e-5 : 1e-12, tolw = dt == DType::f32 ? 1e-4 : 1e-11;
                // dx = r (g w - mean(g w) - xh c): the rounding of g w (a fused multiply-add on
                // CUDA keeps it exact in one place and not the other) is multiplied by r, which is
                // 1/sqrt(eps) = 316 for a constant row (D = 1)
                const double tol_dx = dt == DType::f32 ? tol + 4e-7 * rmax : tol;
                mg::test::require_close(yd, ey, tol, tol, tag + " y");
                mg::test::require_close(xd.grad(), edx, tol_dx, tol_dx, tag + " dx");
                mg::test::require_close(wd.grad(), edw, tolw, tolw, tag + " dweight");
                mg::test::require_close(bd.grad(), edb, tolw, tolw, tag + " dbias");
            }
        }
    }
}

TEST_CASE("layer_norm: no bias equals a zero bias, values and gradients", "[layernorm]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f64, DType::f32}) {
            SECTION(fmt::format("{} {}", dev.str(), dtype_name(dt))) {
                Generator g(6);
                Options o{dt, dev};
                Tensor x = Tensor::randn({2, 13, 9}, o, g), w = Tensor::uniform({9}, 0.5, 1.5, o, g);
                Tensor dy = Tensor::randn({2, 13, 9}, o, g);
                Tensor x1 = x.detach().set_requires_grad(true), w1 = w.detach().set_requires_grad(true);
                Tensor x2 = x.detach().set_requires_grad(true), w2 = w.detach().set_requires_grad(true);
                Tensor zero = Tensor::zeros({9}, o).set_requires_grad(true);
                Tensor y1 = layer_norm(x1, w1, Tensor());
                Tensor y2 = layer_norm(x2, w2, zero);
                y1.backward(dy);
                y2.backward(dy);
                // the same kernels on the same rows; adding b = 0 changes no bit
                mg::test::require_close(y1, y2, 0, 0, "y");
                mg::test::require_close(x1.grad(), x2.grad(), 0, 0, "dx");
                mg::test::require_close(w1.grad(), w2.grad(), 0, 0, "dweight");
                // dbias = sum over rows of dy
                mg::test::require_close(zero.grad(), sum(dy.reshape({26, 9}), {0}), 1e-5, 1e-5, "dbias");
            }
        }
    }
}

TEST_CASE("layer_norm: dweight and dbias are bit-identical across runs", "[layernorm]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator g(8);
            Tensor x = Tensor::randn({5000, 65}, {DType::f32, dev}, g), w = Tensor::randn({65}, {DType::f32, dev}, g);
            Tensor b = Tensor::randn({65}, {DType::f32, dev}, g), dy = Tensor::randn({5000, 65}, {DType::f32, dev}, g);
            std::vector<float> first_w, first_b;
            for (int run = 0; run < 3; ++run) {
                Tensor wr = w.detach().set_requires_grad(true), br = b.detach().set_requires_grad(true);
                layer_norm(x, wr, br).backward(dy);
                auto vw = wr.grad().to_vector<float>(), vb = br.grad().to_vector<float>();
                if (run == 0) {
                    first_w = vw;
                    first_b = vb;
                } else {
                    CHECK(vw == first_w);
                    CHECK(vb == first_b);
                }
            }
        }
    }
}

TEST_CASE("layer_norm: no rows gives an empty output and zero dweight, dbias", "[layernorm]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Options o{DType::f32, dev};
            Tensor x = Tensor::zeros({0, 6}, o).set_requires_grad(true);
            Tensor w = Tensor::ones({6}, o).set_requires_grad(true), b = Tensor::ones({6}, o).set_requires_grad(true);
            Tensor y = layer_norm(x, w, b);
            CHECK(y.shape() == Shape{0, 6});
            y.backward(Tensor::zeros({0, 6}, o));
            mg::test::require_close(w.grad(), Tensor::zeros({6}), 0, 0, "dweight");
            mg::test::require_close(b.grad(), Tensor::zeros({6}), 0, 0, "dbias");
        }
    }
}

TEST_CASE("layer_norm: bad inputs name the op and the shapes", "[layernorm][errors]") {
    Tensor x = Tensor::zeros({2, 3, 8}), w = Tensor::ones({8}), b = Tensor::zeros({8});
    REQUIRE_ERROR_WITH(layer_norm(x, Tensor::ones({7}), b), "layer_norm", "weight is (7) f32 cpu", "x is (2,3,8) f32 cpu");
    REQUIRE_ERROR_WITH(layer_norm(x, Tensor::ones({8, 1}), b), "layer_norm", "weight is (8,1) f32 cpu");
    REQUIRE_ERROR_WITH(layer_norm(x, w, Tensor::zeros({7})), "layer_norm", "bias is (7) f32 cpu", "x is (2,3,8) f32 cpu");
    REQUIRE_ERROR_WITH(layer_norm(x, w, Tensor::zeros({1, 8})), "layer_norm", "bias is (1,8) f32 cpu");
    REQUIRE_ERROR_WITH(layer_norm(x, w.to(DType::f64), b), "layer_norm", "(8) f64 cpu", "same dtype");
    REQUIRE_ERROR_WITH(layer_norm(x, w, b.to(DType::f64)), "layer_norm", "bias is (8) f64 cpu", "same dtype");
    REQUIRE_ERROR_WITH(layer_norm(x, w, Tensor::zeros({8}, {DType::i32})), "layer_norm", "bias is (8) i32 cpu",
                       "f32 or f64");
    REQUIRE_ERROR_WITH(layer_norm(x, w, b, -1.0), "layer_norm", "eps = -1", "(2,3,8) f32 cpu");
    REQUIRE_ERROR_WITH(layer_norm(x, w, b, INFINITY), "layer_norm", "eps = inf", "(2,3,8) f32 cpu");
    REQUIRE_ERROR_WITH(layer_norm(Tensor::zeros({4}, {DType::i32}), Tensor::ones({4}), Tensor()), "layer_norm",
                       "(4) i32 cpu");
    REQUIRE_ERROR_WITH(layer_norm(x, Tensor(), b), "layer_norm", "weight is an undefined tensor");
    if (cuda::available()) {
        REQUIRE_ERROR_WITH(layer_norm(x, w.to(Device::cuda(0)), b), "layer_norm", "x is (2,3,8) f32 cpu",
                           "(8) f32 cuda:0", "same device");
        REQUIRE_ERROR_WITH(layer_norm(x, w, b.to(Device::cuda(0))), "layer_norm", "bias is (8) f32 cuda:0",
                           "same device");
    }
}
