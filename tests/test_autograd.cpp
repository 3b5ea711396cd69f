// tests/test_autograd.cpp: the engine (scalar and given-gradient backward, accumulation, NoGrad,
// detach, zero_grad, freed graphs) and gradcheck itself, including that it catches a wrong
// backward and says where.
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

TEST_CASE("autograd: backward from a scalar, and gradient accumulation", "[autograd]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}, {DType::f64, dev, true});
            // L = sum(x * x + 3 x) -> dL/dx = 2x + 3 ; x is used three times
            Tensor y = sum(x * x + x * 3.0);
            CHECK(y.item() == 1 + 4 + 9 + 3 * 6);
            y.backward();
            CHECK(x.grad().to_vector<double>() == std::vector<double>{5, 7, 9});
            // a second graph accumulates into .grad
            sum(x).backward();
            CHECK(x.grad().to_vector<double>() == std::vector<double>{6, 8, 10});
            x.zero_grad();
            CHECK(!x.grad().defined());
        }
    }
}

TEST_CASE("autograd: backward with a given gradient; a shared subexpression", "[autograd]") {
    Tensor a = Tensor::from_vector(std::vector<double>{1, -1}, {2}, {DType::f64, Device::cpu(), true});
    Tensor b = exp(a);   // used twice below
    Tensor y = b * b;    // y = exp(2a), dy/da = 2 exp(2a)
    y.backward(Tensor::from_vector(std::vector<double>{1, 10}, {2}, {DType::f64}));
    auto g = a.grad().to_vector<double>();
    CHECK(g[0] == Approx(2 * std::exp(2.0)).epsilon(1e-14));
    CHECK(g[1] == Approx(10 * 2 * std::exp(-2.0)).epsilon(1e-14));
}

TEST_CASE("autograd: NoGrad, detach and requires_grad propagation", "[autograd]") {
    Tensor x = Tensor::ones({2}, {DType::f32, Device::cpu(), true});
    Tensor y = x * 2.0;
    CHECK(y.requires_grad());
    CHECK(!y.is_leaf());
    {
        NoGrad ng;
        Tensor z = x * 2.0;
        CHECK(!z.requires_grad());
        CHECK(z.is_leaf());
    }
    CHECK(autograd::grad_enabled());
    Tensor d = y.detach();
    CHECK(!d.requires_grad());
    CHECK(d.impl().storage == y.impl().storage);
    Tensor c = Tensor::ones({2}) * 3.0; // no input requires grad
    CHECK(!c.requires_grad());
    REQUIRE_ERROR_WITH(c.backward(), "backward", "does not require grad");
}

TEST_CASE("autograd: errors for a non-scalar output and for a second backward through a freed graph", "[autograd][errors]") {
    Tensor x = Tensor::randn({2, 3}, {DType::f32}).set_requires_grad(true);
    Tensor y = exp(x);
    REQUIRE_ERROR_WITH(y.backward(), "backward", "(2,3) f32 cpu", "6 elements", "gradient must be given");
    REQUIRE_ERROR_WITH(y.backward(Tensor::ones({3})), "backward", "gradient (3) f32 cpu", "output (2,3) f32 cpu");
    Tensor l = sum(y);
    l.backward();
    REQUIRE_ERROR_WITH(l.backward(), "a second time", "retain_graph");
    // with retain_graph the graph can be walked twice, and the gradients add up
    x.zero_grad();
    Tensor l2 = sum(exp(x));
    l2.backward(Tensor(), true);
    Tensor g1 = x.grad().clone();
    l2.backward();
    mg::test::require_close(x.grad(), g1 * 2.0, 1e-6, 0, "twice the gradient");
}

TEST_CASE("autograd: saved tensors are released after backward", "[autograd]") {
    Tensor x = Tensor::randn({1000}, {DType::f64}).set_requires_grad(true);
    Tensor y = exp(x); // ExpBackward saves x and y
    std::weak_ptr<Storage> saved_y = y.impl().storage;
    Tensor l = sum(y);
    y = Tensor(); // drop our handle: only the graph holds exp's output now
    CHECK(!saved_y.expired());
    l.backward();
    CHECK(saved_y.expired()); // freed as soon as ExpBackward ran
}

// y = x^2 with a deliberately wrong derivative (x instead of 2x) at one element only.
struct WrongSquareBackward : autograd::Node {
    Tensor x;
    std::string name() const override { return "WrongSquareBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override {
        auto xs = x.to(Device::cpu()).to_vector<double>();
        std::vector<double> d(xs.size());
        for (size_t i = 0; i < xs.size(); ++i) d[i] = (i == 4 ? 1.0 : 2.0) * xs[i];
        return {g[0] * Tensor::from_vector(d, x.shape(), x.options())};
    }
};
static Tensor wrong_square(const Tensor& x) {
    Tensor y = (x.detach() * x.detach());
    autograd::record<WrongSquareBackward>({x}, {y}, [&](WrongSquareBackward& n) { n.x = x.detach(); });
    return y;
}

TEST_CASE("gradcheck: passes a correct backward and catches a wrong one, naming the element", "[autograd][gradcheck]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(3);
            Tensor a = Tensor::uniform({2, 3}, 0.5, 1.5, {DType::f64, dev}, gen).set_requires_grad(true);
            Tensor b = Tensor::randn({3}, {DType::f64, dev}, gen).set_requires_grad(true);
            auto ok = gradcheck([](const std::vector<Tensor>& x) { return x[0] * x[0] + x[1]; }, {a, b});
            INFO(ok.message);
            CHECK(ok.ok);
            CHECK(ok.num_checked == 9);
            auto bad = gradcheck([](const std::vector<Tensor>& x) { return wrong_square(x[0]) + x[1]; }, {a, b},
                                 {.names = {"a", "b"}});
            REQUIRE(!bad.ok);
            CHECK(bad.input == 0);
            CHECK(bad.num_failed == 1); // only a's flat element 4 is wrong; b's gradient is right
            CHECK(bad.message.find("input 0 (a) (2,3) f64 " + dev.str() + " at index (1,1)") != std::string::npos);
            CHECK(bad.message.find("analytical") != std::string::npos);
            CHECK(bad.message.find("numerical") != std::string::npos);
        }
    }
}

TEST_CASE("gradcheck: reports the worst element's multi-index and both values", "[autograd][gradcheck]") {
    Generator gen(4);
    Tensor x = Tensor::uniform({2, 3}, 0.5, 1.5, {DType::f64}, gen).set_requires_grad(true);
    auto r = gradcheck([](const std::vector<Tensor>& v) { return wrong_square(v[0]); }, {x});
    REQUIRE(!r.ok);
    CHECK(r.input == 0);
    CHECK(r.index == std::vector<int64_t>{1, 1}); // flat element 4 of (2,3)
    CHECK(r.num_failed == 1);
    CHECK(r.analytical == Approx(r.numerical / 2).epsilon(1e-6));
    CHECK(r.message.find("at index (1,1)") != std::string::npos);
}

TEST_CASE("gradcheck: bad calls", "[autograd][gradcheck][errors]") {
    Tensor f = Tensor::ones({2}, {DType::f32}).set_requires_grad(true);
    auto id = [](const std::vector<Tensor>& x) { return x[0] * 1.0; };
    REQUIRE_ERROR_WITH(gradcheck(id, {f}), "gradcheck", "input 0", "f32", "f64");
    Tensor d = Tensor::ones({2}, {DType::f64});
    REQUIRE_ERROR_WITH(gradcheck(id, {d}), "gradcheck", "no input requires grad");
}
