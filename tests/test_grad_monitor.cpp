// tests/test_grad_monitor.cpp: train/grad_monitor.h (the warning on exploding gradient norms) and
// train/clip.h's per-tensor norms that feed it.
#include "tests/helpers.h"
#include "train/clip.h"
#include "train/grad_monitor.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;

TEST_CASE("tensor_norms: each tensor's norm, in order, 0 for undefined ones", "[train][clip]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(11);
            Tensor a = Tensor::randn({4, 3}, {DType::f64, dev}, gen), b = Tensor::randn({7}, {DType::f32, dev}, gen);
            auto norm_of = [](const Tensor& t) {
                double ss = 0;
                for (double v : t.to(DType::f64).to_vector<double>()) ss += v * v;
                return std::sqrt(ss);
            };
            const std::vector<double> n = tensor_norms({a, Tensor(), b});
            REQUIRE(n.size() == 3);
            CHECK(n[0] == Approx(norm_of(a)).epsilon(1e-14));
            CHECK(n[1] == 0.0);
            CHECK(n[2] == Approx(norm_of(b)).epsilon(1e-6));
            CHECK(global_norm({a, b}) == Approx(std::hypot(n[0], n[2])).epsilon(1e-14));
            CHECK(tensor_norms({}).empty());
        }
    }
}

TEST_CASE("GradNormMonitor: names a parameter whose norm jumps 100x over its running median, once", "[train]") {
    GradNormMonitor m(100.0, 50, 5);
    const std::vector<std::string> names = {"a", "b"};
    // history: a around 1, b around 0.01; nothing is said while fewer than 5 norms are known
    for (int s = 1; s <= 5; ++s) CHECK(m.observe(s, names, {1.0 + 0.1 * s, 0.01}).empty());
    CHECK(m.observe(6, names, {50.0, 0.02}).empty()); // 50x: not yet orders of magnitude
    std::vector<GradNormWarning> w = m.observe(7, names, {200.0, 0.01});
    REQUIRE(w.size() == 1);
    CHECK(w[0].name == "a");
    CHECK(w[0].step == 7);
    CHECK(w[0].norm == 200.0);
    CHECK(w[0].median == Approx(1.4)); // the upper median of 1.1, 1.2, 1.3, 1.4, 1.5, 50
    CHECK_THAT(w[0].message(), Catch::Contains("step 7") && Catch::Contains("'a'") && Catch::Contains("200"));
    // still high: not repeated; back under, then high again: said again
    CHECK(m.observe(8, names, {300.0, 0.01}).empty());
    CHECK(m.observe(9, names, {1.0, 0.01}).empty());
    // the high norms are in the history too, but the median stays 1.4: 1000 is > 100x of it
    w = m.observe(10, names, {1000.0, 5.0});
    REQUIRE(w.size() == 2);
    CHECK(w[0].name == "a");
    CHECK(w[1].name == "b");
    // a NaN norm counts as high
    GradNormMonitor n(100.0, 50, 1);
    n.observe(1, {"x"}, {1.0});
    w = n.observe(2, {"x"}, {NAN});
    REQUIRE(w.size() == 1);
    CHECK(w[0].name == "x");
    REQUIRE_ERROR_WITH(n.observe(3, {"x", "y"}, {1.0}), "GradNormMonitor", "2 names for 1 norms");
}

TEST_CASE("GradNormMonitor: its memory restores into a new monitor that warns as the first would", "[train]") {
    const std::vector<std::string> names = {"a", "b"};
    GradNormMonitor one, two;
    for (int s = 1; s <= 8; ++s) one.observe(s, names, {1.0 + 0.01 * s, 2.0});
    const GradNormMonitor::Memory m = one.memory();
    CHECK(m.history.size() == 2);
    CHECK(m.history[0].size() == 8);
    two.restore(m);
    CHECK(two.memory() == m);
    const auto w1 = one.observe(9, names, {500.0, 2.0}), w2 = two.observe(9, names, {500.0, 2.0});
    REQUIRE(w1.size() == 1);
    REQUIRE(w2.size() == 1);
    CHECK(w2[0].message() == w1[0].message());
    CHECK(two.memory() == one.memory());
    REQUIRE_ERROR_WITH(two.restore({{{1.0}}, {}}), "GradNormMonitor", "1 histories for 0 warned flags");
}
