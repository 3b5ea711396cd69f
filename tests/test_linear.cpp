// tests/test_linear.cpp: y = x W^T + b against the double reference at awkward sizes, with and
// without bias, its three gradients against direct loops, empty dims, gradcheck on each device,
// parity, bad inputs.
#include "ops/cat.h"
#include "ops/linear.h"
#include "ops/reduce.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

struct Size { Shape x; int64_t Dout; bool bias; };

} // namespace

TEST_CASE("linear: forward and gradients against the references at awkward sizes", "[linear]") {
    const Size sizes[] = {{{1, 1, 1}, 1, true}, {{2, 37, 5}, 7, true}, {{3, 130}, 67, false}, {{5}, 3, true},
                          {{4, 1, 33}, 1, false}};
    for (const Size& s : sizes) {
        int64_t Din = s.x.back(), M = numel_of(s.x) / Din, Dout = s.Dout;
        Generator g(uint64_t(M * 100 + Din));
        Tensor x = Tensor::randn(s.x, {DType::f64}, g), w = Tensor::randn({Dout, Din}, {DType::f64}, g);
        Tensor b = s.bias ? Tensor::randn({Dout}, {DType::f64}, g) : Tensor();
        Shape ys(s.x.begin(), s.x.end() - 1);
        ys.push_back(Dout);
        Tensor gy = Tensor::randn(ys, {DType::f64}, g);
        // references: y = x W^T + b; dx = g W; dW = g^T x; db = sum_rows g
        std::vector<double> y(static_cast<size_t>(M * Dout));
        linear_ref<double>(y.data(), x.data<double>(), w.data<double>(), s.bias ? b.data<double>() : nullptr, M, Din, Dout);
        auto xv = x.to_vector<double>(), wv = w.to_vector<double>(), gv = gy.to_vector<double>();
        std::vector<double> dx(static_cast<size_t>(M * Din), 0.0), dw(static_cast<size_t>(Dout * Din), 0.0),
            db(static_cast<size_t>(Dout), 0.0);
        for (int64_t m = 0; m < M; ++m)
            for (int64_t o = 0; o < Dout; ++o) {
                double go = gv[size_t(m * Dout + o)];
                db[size_t(o)] += go;
                for (int64_t k = 0; k < Din; ++k) {
                    dx[size_t(m * Din + k)] += go * wv[size_t(o * Din + k)];
                    dw[size_t(o * Din + k)] += go * xv[size_t(m * Din + k)];
                }
            }
        std::string what = fmt::format("linear(x {}, Dout={}, bias={})", shape_str(s.x), Dout, s.bias);
        for (Device dev : devices()) {
            for (DType dt : {DType::f64, DType::f32}) {
                auto leaf = [&](const Tensor& t) { return t.to(dt).to(dev).detach().set_requires_grad(true); };
                Tensor xd = leaf(x), wd = leaf(w), bd = s.bias ? leaf(b) : Tensor();
                Tensor yd = linear(xd, wd, bd);
                REQUIRE(yd.shape() == ys);
                // f32: dot products of up to 130 terms of size ~1, in a different order (BLAS)
                double tol = dt == DType::f32 ? 2e-5 : 1e-12;
                std::string tag = fmt::format("{} {} {}", what, dev.str(), dtype_name(dt));
                mg::test::require_close(yd, Tensor::from_vector(y, ys), tol, tol, tag + " y");
                yd.backward(gy.to(dt).to(dev));
                mg::test::require_close(xd.grad(), Tensor::from_vector(dx, s.x), tol, tol, tag + " dx");
                mg::test::require_close(wd.grad(), Tensor::from_vector(dw, {Dout, Din}), tol, tol, tag + " dweight");
                if (s.bias) mg::test::require_close(bd.grad(), Tensor::from_vector(db, {Dout}), tol, tol, tag + " dbias");
            }
        }
    }
}

TEST_CASE("linear: empty dims: no rows, Din = 0, Dout = 0", "[linear]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Options o{DType::f32, dev};
            Tensor b = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}, o);
            CHECK(linear(Tensor::zeros({0, 4}, o), Tensor::zeros({3, 4}, o), b).shape() == Shape{0, 3});
            // Din = 0: an empty sum, so y = bias (or 0)
            CHECK(linear(Tensor::zeros({2, 0}, o), Tensor::zeros({3, 0}, o), b).to_vector<float>() ==
                  std::vector<float>{1, 2, 3, 1, 2, 3});
            CHECK(linear(Tensor::zeros({2, 0}, o), Tensor::zeros({3, 0}, o)).to_vector<float>() == std::vector<float>(6, 0.f));
            Tensor w = Tensor::randn({0, 4}, o).set_requires_grad(true);
            Tensor x = Tensor::randn({2, 4}, o).set_requires_grad(true);
            Tensor y = linear(x, w);
            CHECK(y.shape() == Shape{2, 0});
            sum(y).backward();
            CHECK(x.grad().to_vector<float>() == std::vector<float>(8, 0.f)); // Dout = 0: dx = 0
        }
    }
}

TEST_CASE("linear_split: equals split(linear) in values and every gradient", "[linear]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f64, DType::f32}) {
            SECTION(fmt::format("{} {}", dev.str(), dtype_name(dt))) {
                Generator g(12);
                const Options o{dt, dev};
                // pieces of odd widths, one empty, over an odd Din; x a (3, 37, 13) batch of rows
                const std::vector<int64_t> sizes = {7, 0, 11, 1};
                Tensor x = Tensor::randn({3, 37, 13}, o, g), w = Tensor::randn({19, 13}, o, g), b = Tensor::randn({19}, o, g);
                std::vector<Tensor> wts;
                for (int64_t k : sizes) wts.push_back(Tensor::randn({3, 37, k}, o, g));
                auto leaves = [&] {
                    return std::vector<Tensor>{x.detach().set_requires_grad(true), w.detach().set_requires_grad(true),
                                               b.detach().set_requires_grad(true)};
                };
                auto a = leaves(), c = leaves();
                std::vector<Tensor> got = linear_split(a[0], a[1], sizes, a[2]);
                std::vector<Tensor> want = split(linear(c[0], c[1], c[2]), sizes, -1);
                REQUIRE(got.size() == sizes.size());
                Tensor la = Tensor::zeros({}, o), lc = Tensor::zeros({}, o);
                for (size_t i = 0; i < sizes.size(); ++i) {
                    CHECK(got[i].is_contiguous());
                    // each piece is its own GEMM: the same dot products as the whole GEMM's columns
                    double tol = dt == DType::f32 ? 1e-5 : 1e-12;
                    mg::test::require_close(got[i], want[i], tol, tol, fmt::format("piece {}", i));
                    if (i == 2) continue; // a piece that gets no gradient: the engine's zeros
                    la = la + sum(got[i] * wts[i]);
                    lc = lc + sum(want[i] * wts[i]);
                }
                la.backward();
                lc.backward();
                const char* names[] = {"dx", "dweight", "dbias"};
                for (int i = 0; i < 3; ++i) {
                    double tol = dt == DType::f32 ? 1e-4 : 1e-11; // dx: the pieces' GEMMs summed
                    mg::test::require_close(a[size_t(i)].grad(), c[size_t(i)].grad(), tol, tol, names[i]);
                }
            }
        }
    }
}

TEST_CASE("linear: bad inputs name the op and the shapes", "[linear][errors]") {
    Tensor x = Tensor::zeros({2, 5}), w = Tensor::zeros({3, 5});
    REQUIRE_ERROR_WITH(linear(x, Tensor::zeros({3, 4})), "linear", "x is (2,5) f32 cpu", "weight is (3,4) f32 cpu", "Din = 4");
    REQUIRE_ERROR_WITH(linear(x, Tensor::zeros({15})), "linear", "weight is (15) f32 cpu", "2-D (Dout, Din)");
    REQUIRE_ERROR_WITH(linear(x, w, Tensor::zeros({4})), "linear", "bias is (4) f32 cpu", "(Dout) = (3)", "(3,5) f32 cpu");
    REQUIRE_ERROR_WITH(linear(x, w.to(DType::f64)), "linear", "(2,5) f32 cpu", "(3,5) f64 cpu", "same dtype");
    REQUIRE_ERROR_WITH(linear(Tensor::zeros({2, 5}, {DType::i32}), w), "linear", "(2,5) i32 cpu");
    REQUIRE_ERROR_WITH(linear(Tensor::scalar(1.0), w), "linear", "x is () f32 cpu");
    REQUIRE_ERROR_WITH(linear_split(x, w, {2, 2}), "linear", "pieces [2, 2]", "(3,5) f32 cpu", "sum to Dout = 3");
    REQUIRE_ERROR_WITH(linear_split(x, w, {4, -1}), "linear", "pieces [4, -1]", "widths >= 0");
    REQUIRE_ERROR_WITH(linear_split(x, w, {}), "linear", "pieces []");
}
