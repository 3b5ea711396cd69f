// tests/test_elementwise.cpp: broadcasting arithmetic and pointwise math: values against a
// double reference, gradcheck on each device, CUDA-vs-CPU parity, bad inputs.
#include <cmath>

#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

TEST_CASE("elementwise: broadcast values against a reference loop", "[elementwise]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator g(11);
            // a (3,1,5), b (4,5) -> (3,4,5); b read through a transposed (non-contiguous) view
            Tensor a = Tensor::randn({3, 1, 5}, {DType::f32, dev}, g);
            Tensor bt = Tensor::uniform({5, 4}, 0.5, 2.0, {DType::f32, dev}, g);
            Tensor b = bt.transpose(0, 1);
            auto va = a.to_vector<float>(), vb = b.contiguous().to_vector<float>();
            Tensor outs[4] = {a + b, a - b, a * b, a / b};
            for (int op = 0; op < 4; ++op) {
                REQUIRE(outs[op].shape() == Shape{3, 4, 5});
                auto v = outs[op].to_vector<float>();
                for (int i = 0; i < 3; ++i)
                    for (int j = 0; j < 4; ++j)
                        for (int k = 0; k < 5; ++k) {
                            double x = va[size_t(i * 5 + k)], y = vb[size_t(j * 5 + k)];
                            double ref = op == 0 ? x + y : op == 1 ? x - y : op == 2 ? x * y : x / y;
                            INFO("op " << op << " at (" << i << "," << j << "," << k << ")");
                            CHECK(v[size_t((i * 4 + j) * 5 + k)] == Approx(ref).epsilon(1e-6).margin(1e-7));
                        }
            }
        }
    }
}

TEST_CASE("elementwise: unary values against std:: in double", "[elementwise]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator g(12);
            Tensor x = Tensor::uniform({37}, 0.25, 3.0, {DType::f64, dev}, g);
            auto v = x.to_vector<double>();
            auto e = exp(x).to_vector<double>(), l = log(x).to_vector<double>();
            auto s = sqrt(x).to_vector<double>(), r = rsqrt(x).to_vector<double>();
            auto p = pow(x, 2.5).to_vector<double>(), n = (-x).to_vector<double>();
            for (size_t i = 0; i < v.size(); ++i) {
                CHECK(e[i] == Approx(std::exp(v[i])).epsilon(1e-14));
                CHECK(l[i] == Approx(std::log(v[i])).epsilon(1e-14).margin(1e-15));
                CHECK(s[i] == Approx(std::sqrt(v[i])).epsilon(1e-14));
                CHECK(r[i] == Approx(1 / std::sqrt(v[i])).epsilon(1e-14));
                CHECK(p[i] == Approx(std::pow(v[i], 2.5)).epsilon(1e-14));
                CHECK(n[i] == -v[i]);
            }
        }
    }
}

TEST_CASE("elementwise: softshrink values and gradient against the formula", "[elementwise]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator g(13);
            // 41 values of both signs, plus the kinks +-lambda and 0 themselves
            Tensor r = Tensor::randn({41}, {DType::f64, dev}, g);
            Tensor x = cat({r, Tensor::from_vector(std::vector<double>{-0.3, 0.3, 0.0}, {3}).to(dev)}, 0).detach();
            x.set_requires_grad(true);
            const double lambda = 0.3;
            Tensor y = softshrink(x, lambda);
            Tensor w = Tensor::randn({44}, {DType::f64, dev}, g);
            sum(y * w).backward();
            auto v = x.to_vector<double>(), out = y.to_vector<double>(), dx = x.grad().to_vector<double>();
            auto wv = w.to_vector<double>();
            for (size_t i = 0; i < v.size(); ++i) {
                INFO("x = " << v[i]);
                // relu(|x| - lambda) sign(x), the authors' kernel squash written out
                double sign = v[i] > 0 ? 1.0 : v[i] < 0 ? -1.0 : 0.0;
                CHECK(out[i] == Approx(std::max(std::abs(v[i]) - lambda, 0.0) * sign).margin(1e-15));
                CHECK(dx[i] == (std::abs(v[i]) > lambda ? wv[i] : 0.0));
            }
            CHECK(out[41] == 0.0);
            CHECK(out[42] == 0.0);
        }
    }
}

TEST_CASE("elementwise: bad inputs name the op and both shapes", "[elementwise][errors]") {
    REQUIRE_ERROR_WITH(softshrink(Tensor::zeros({2}), -0.1), "softshrink", "lambda = -0.1", ">= 0");
    REQUIRE_ERROR_WITH(softshrink(Tensor::zeros({2}, {DType::i32}), 0.1), "softshrink", "(2) i32 cpu");
    Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
    REQUIRE_ERROR_WITH(a + b, "add", "(2,3)", "(4)", "cannot be broadcast");
    REQUIRE_ERROR_WITH(a * Tensor::zeros({3}, {DType::f64}), "mul", "(2,3) f32 cpu", "(3) f64 cpu", "same dtype");
    REQUIRE_ERROR_WITH(a - Tensor::zeros({2, 3}, {DType::i32}), "sub", "i32", "expected dtype f32 or f64");
    REQUIRE_ERROR_WITH(exp(Tensor::zeros({2}, {DType::i32})), "exp", "(2) i32 cpu", "f32 or f64");
    REQUIRE_ERROR_WITH(a / Tensor(), "div", "undefined");
    if (cuda::available())
        REQUIRE_ERROR_WITH(a + Tensor::zeros({2, 3}, {DType::f32, Device::cuda(0)}), "add", "(2,3) f32 cpu",
                           "(2,3) f32 cuda:0", "same device");
}
