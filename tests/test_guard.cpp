// tests/test_guard.cpp: the NaN/Inf guard (train/guard.h).
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/checkpoint.h"
#include "train/clip.h"
#include "train/guard.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;
namespace fs = std::filesystem;

// ==== NaN/Inf guard ===========================================================================

TEST_CASE("guard: names the step, the tensor and the first non-finite index", "[train]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor ok = Tensor::randn({3, 4}, {DType::f32, dev});
            std::vector<float> v(12, 1.0f);
            v[6] = INFINITY;
            v[9] = NAN;
            Tensor bad = Tensor::from_vector(v, {3, 4}, {DType::f32, dev});
            Tensor ids = Tensor::zeros({2}, {DType::i32, dev});
            check_finite(7, {{"ok", ok}, {"none", Tensor()}, {"ids", ids}}); // passes
            REQUIRE_ERROR_WITH(check_finite(7, {{"ok", ok}, {"layers.1.mixer.A_log", bad}, {"bad2", bad}}),
                               "NaN/Inf guard", "step 7", "gradient 'layers.1.mixer.A_log'",
                               fmt::format("(3,4) f32 {}", dev.str()), "2 non-finite values", "inf at index (1,2)",
                               "flat 6");
            Tensor p = Tensor::zeros({2}, {DType::f64, dev});
            set_grad(p, Tensor::from_vector(std::vector<double>{1, -NAN}, {2}, {DType::f64, dev}));
            REQUIRE_ERROR_WITH(check_finite(3, 0.25, {{"emb", p}}), "step 3", "'emb'", "1 non-finite value;",
                               "index (1)");
            REQUIRE_ERROR_WITH(check_finite(4, NAN, {{"emb", p}}), "step 4", "the loss is nan");
            REQUIRE_ERROR_WITH(check_finite(5, {{"w", bad}}, "parameter"), "parameter 'w'");
        }
    }
}

TEST_CASE("guard: a CUDA probe's skip word keeps AdamW from applying a non-finite step", "[train][cuda]") {
    MG_REQUIRE_CUDA();
    Generator gen(5);
    const Options o{DType::f32, Device::cuda(0)};
    NamedTensors params = {{"a", Tensor::randn({5, 3}, o, gen)}, {"b", Tensor::randn({7}, o, gen)}};
    for (auto& [n, p] : params) p.set_requires_grad(true);
    AdamW opt(params);
    auto host = [](const Tensor& t) { return t.detach().to(Device::cpu()).to_vector<float>(); };
    const std::vector<float> a0 = host(params[0].second), b0 = host(params[1].second);

    // finite gradients: the probe passes and the step is applied
    set_grad(params[0].second, Tensor::randn({5, 3}, o, gen));
    set_grad(params[1].second, Tensor::randn({7}, o, gen));
    FiniteProbe ok(1, named_grads(params));
    opt.step(ok.skip_words());
    ok.check();
    const std::vector<float> a1 = host(params[0].second), b1 = host(params[1].second);
    CHECK(a1 != a0);
    CHECK(b1 != b0);

    // a NaN in b's gradient: nothing moves, on either tensor, although check() runs after step()
    std::vector<float> g(7, 0.5f);
    g[4] = NAN;
    g[6] = -INFINITY;
    set_grad(params[0].second, Tensor::randn({5, 3}, o, gen));
    set_grad(params[1].second, Tensor::from_vector(g, {7}, o));
    FiniteProbe bad(2, named_grads(params));
    REQUIRE(bad.skip_words().size() == 1);
    opt.step(bad.skip_words());
    REQUIRE_ERROR_WITH(bad.check(), "step 2", "gradient 'b'", "2 non-finite values", "nan at index (4)", "flat 4");
    CHECK(host(params[0].second) == a1);
    CHECK(host(params[1].second) == b1);
    REQUIRE_ERROR_WITH(opt.step({Tensor::zeros({1}, {DType::f32, Device::cuda(0)})}), "adamw_step_", "skip word is (1) f32 cuda:0", "i32");
}
