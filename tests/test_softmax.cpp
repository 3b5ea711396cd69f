// tests/test_softmax.cpp: softmax over the last dim: kernels against the double references at
// awkward sizes (D past 1024 for multi-warp teams), huge values, rows with some -inf, a fully
// -inf row (zeros, by definition), NaN rows, gradients on each device, bad inputs.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/softmax.h"
#ifdef MG_CUDA
#include "cuda/runtime.h"
#include "cuda/softmax.h"
#endif
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

struct Size { int64_t B, L, D; };

constexpr double kInf = std::numeric_limits<double>::infinity();

// Checks the kernels on both devices (poisoned outputs) and the op on every device in f64 and
// f32 (values and dx) against the double references, for x (B, L, D) in f64 on the CPU.
// f32: y and dx are sums over D <= 2500 terms of size <= 1 (y sums to 1), accumulated in f32 on
// CUDA; exp of an f32 argument is within 2 ulp; relative error a few 1e-7, so 1e-5 leaves room.
void check_against_refs(const Tensor& x, const Tensor& dy, const std::string& what) {
    const int64_t D = x.size(-1), N = x.numel() / D;
    std::vector<double> y(static_cast<size_t>(N * D)), dx(static_cast<size_t>(N * D));
    softmax_ref<double>(y.data(), x.data<double>(), N, D);
    softmax_backward_ref<double>(dx.data(), dy.data<double>(), x.data<double>(), N, D);
    Tensor ey = Tensor::from_vector(y, x.shape()), edx = Tensor::from_vector(dx, x.shape());
    {   // the CPU kernels write every element (poisoned outputs)
        Tensor out = Tensor::full(x.shape(), NAN, {DType::f64});
        softmax_forward_cpu<double>(out.data<double>(), x.data<double>(), N, D);
        mg::test::require_close(out, ey, 1e-13, 1e-13, what + " cpu forward kernel");
        Tensor gx = Tensor::full(x.shape(), NAN, {DType::f64});
        softmax_backward_cpu<double>(gx.data<double>(), dy.data<double>(), out.data<double>(), N, D);
        mg::test::require_close(gx, edx, 1e-12, 1e-12, what + " cpu backward kernel");
    }
#ifdef MG_CUDA
    if (cuda::available()) { // the CUDA kernels write every element too (NaN-poisoned outputs)
        const Options o{DType::f64, Device::cuda(0)};
        Tensor xg = x.to(Device::cuda(0)), dyg = dy.to(Device::cuda(0));
        Tensor out = Tensor::full(x.shape(), NAN, o);
        cuda::softmax_forward<double>(out.data<double>(), xg.data<double>(), N, D);
        mg::test::require_close(out.to(Device::cpu()), ey, 1e-13, 1e-13, what + " cuda forward kernel");
        Tensor gx = Tensor::full(x.shape(), NAN, o);
        cuda::softmax_backward<double>(gx.data<double>(), dyg.data<double>(), out.data<double>(), N, D);
        mg::test::require_close(gx.to(Device::cpu()), edx, 1e-12, 1e-12, what + " cuda backward kernel");
    }
#endif
    for (Device dev : devices()) {
        for (DType dt : {DType::f64, DType::f32}) {
            Tensor xd = x.to(dt).to(dev).detach().set_requires_grad(true);
            Tensor yd = softmax(xd);
            yd.backward(dy.to(dt).to(dev));
            std::string tag = fmt::format("{} {} {}", what, dev.str(), dtype_name(dt));
            double tol = dt == DType::f32 ? 1e-5 : 1e-12;
            mg::test::require_close(yd, ey, tol, tol, tag + " y");
            mg::test::require_close(xd.grad(), edx, tol, tol, tag + " dx");
        }
    }
}

} // namespace

TEST_CASE("softmax: forward and backward against the references at awkward sizes", "[softmax]") {
    // N = B*L rows: 1, 74, 1, 387, 18000; D = 1500 and 2500 take CUDA teams of 64 and 128
    // threads per row (several warps, 4 and 2 rows per block, the last block's second team past
    // the last row); the rest one warp per row
    const Size sizes[] = {{1, 1, 1}, {2, 37, 5}, {1, 1, 768}, {3, 129, 33}, {4, 4500, 17}, {1, 7, 1500}, {3, 1, 2500}};
    for (const Size& s : sizes) {
        Generator g(uint64_t(s.B * s.L * 7 + s.D));
        Tensor x = Tensor::randn({s.B, s.L, s.D}, {DType::f64}, g) * 3.0;
        Tensor dy = Tensor::randn({s.B, s.L, s.D}, {DType::f64}, g);
        check_against_refs(x, dy, fmt::format("softmax(B={}, L={}, D={})", s.B, s.L, s.D));
    }
}

TEST_CASE("softmax: huge values, some -inf, a fully -inf row", "[softmax]") {
    // rows of 37 (a warp and a bit) and of 1500 (a team of 64 threads): row 0 huge and of both
    // signs (|x| up to 1e4: exp of the raw values would overflow), row 1 all -1000 (uniform),
    // row 2 with every third entry -inf, row 3 all -inf (zeros, zero gradient), row 4 -inf but
    // for one entry (one-hot)
    for (int64_t D : {37, 1500}) {
        Generator g(static_cast<uint64_t>(D));
        Tensor x = Tensor::randn({5, D}, {DType::f64}, g);
        double* p = x.data<double>();
        for (int64_t j = 0; j < D; ++j) {
            p[j] = p[j] * 3000.0 + (j % 2 ? 1000.0 : -1000.0);
            p[D + j] = -1000.0;
            if (j % 3 == 0) p[2 * D + j] = -kInf;
            p[3 * D + j] = -kInf;
            p[4 * D + j] = j == D / 2 ? 5.0 : -kInf;
        }
        // values an f32 holds exactly, so the f32 runs see the reference's inputs (an f32 ulp at
        // 1e4 is ~1e-3, which would move the exponents by that much)
        x = x.to(DType::f32).to(DType::f64);
        Tensor dy = Tensor::randn({5, D}, {DType::f64}, g);
        std::string what = fmt::format("softmax(special rows, D={})", D);
        check_against_refs(x, dy, what);
        for (Device dev : devices()) {
            for (DType dt : {DType::f64, DType::f32}) {
                Tensor xd = x.to(dt).to(dev).detach().set_requires_grad(true);
                Tensor y = softmax(xd);
                y.backward(dy.to(dt).to(dev));
                std::string tag = fmt::format("{} {} {}", what, dev.str(), dtype_name(dt));
                auto yv = y.to(DType::f64).to_vector<double>(), gv = xd.grad().to(DType::f64).to_vector<double>();
                INFO(tag);
                CHECK(std::all_of(yv.begin(), yv.end(), [](double v) { return std::isfinite(v); }));
                CHECK(std::all_of(gv.begin(), gv.end(), [](double v) { return std::isfinite(v); }));
                for (int64_t r = 0; r < 5; ++r) {
                    double sum_r = 0;
                    for (int64_t j = 0; j < D; ++j) sum_r += yv[size_t(r * D + j)];
                    INFO("row " << r << " sums to " << sum_r);
                    CHECK(std::abs(sum_r - (r == 3 ? 0.0 : 1.0)) < 1e-5);
                }
                // the fully masked row: exact zeros and no gradient; the one-hot row: exactly one-hot
                bool masked_zero = true, one_hot = true;
                for (int64_t j = 0; j < D; ++j) {
                    masked_zero = masked_zero && yv[size_t(3 * D + j)] == 0.0 && gv[size_t(3 * D + j)] == 0.0;
                    one_hot = one_hot && yv[size_t(4 * D + j)] == (j == D / 2 ? 1.0 : 0.0);
                }
                CHECK(masked_zero);
                CHECK(one_hot);
            }
        }
    }
}

TEST_CASE("softmax: a NaN makes its row NaN, even among -inf, and leaves the other rows", "[softmax]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f64, DType::f32}) {
            SECTION(fmt::format("{} {}", dev.str(), dtype_name(dt))) {
                std::vector<double> v = {1, NAN, 2, 3, -kInf, NAN, -kInf, -kInf, 0, 0, 0, 0};
                Tensor y = softmax(Tensor::from_vector(v, {3, 4}).to(dt).to(dev));
                auto yv = y.to(DType::f64).to_vector<double>();
                for (int j = 0; j < 8; ++j) CHECK(std::isnan(yv[size_t(j)]));
                for (int j = 8; j < 12; ++j) CHECK(yv[size_t(j)] == 0.25);
            }
        }
    }
}

TEST_CASE("softmax: bad inputs name the op and the shapes", "[softmax][errors]") {
    REQUIRE_ERROR_WITH(softmax(Tensor::zeros({4}, {DType::i32})), "softmax", "x is (4) i32 cpu", "f32 or f64");
    REQUIRE_ERROR_WITH(softmax(Tensor::scalar(1.0)), "softmax", "x is () f32 cpu", "at least 1 dim");
    REQUIRE_ERROR_WITH(softmax(Tensor()), "softmax", "x is an undefined tensor");
}
