// tests/test_clip.cpp: gradient clipping by value and by global norm (train/clip.h).
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

// ==== clipping ================================================================================

TEST_CASE("clip: by value, in place, NaN kept, strided gradients", "[train]") {
    for (Device dev : devices()) {
        for (DType dt : {DType::f32, DType::f64}) {
            SECTION(fmt::format("clip_value({}, {})", dev.str(), dtype_name(dt))) {
                Generator gen(3);
                Tensor a = Tensor::uniform({37}, -3, 3, {dt, dev}, gen);
                Tensor b_base = Tensor::uniform({4, 5}, -3, 3, {dt, dev}, gen);
                Tensor b = b_base.transpose(0, 1); // strided view: clipped through its base storage
                std::vector<double> va = host(a), vb = host(b);
                clip_grad_value({a, Tensor(), b}, 1.0);
                auto ca = host(a), cb = host(b);
                for (size_t i = 0; i < va.size(); ++i) CHECK(ca[i] == Approx(std::clamp(va[i], -1.0, 1.0)));
                for (size_t i = 0; i < vb.size(); ++i) CHECK(cb[i] == Approx(std::clamp(vb[i], -1.0, 1.0)));
                Tensor n = Tensor::from_vector(std::vector<double>{NAN, 5, -INFINITY}, {3}, {dt, dev});
                clip_grad_value({n}, 0.5);
                auto cn = host(n);
                CHECK(std::isnan(cn[0]));
                CHECK(cn[1] == 0.5);
                CHECK(cn[2] == -0.5);
            }
        }
    }
    REQUIRE_ERROR_WITH(clip_grad_value({Tensor::zeros({2})}, 0.0), "clip_grad_value", "clip is 0");
    REQUIRE_ERROR_WITH(clip_grad_value({Tensor::zeros({2}, {DType::i32})}, 1.0), "clip_grad_value", "grads[0]", "i32");
}

TEST_CASE("clip: by global norm returns the norm and scales only above the limit", "[train]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(4);
            Tensor a = Tensor::randn({3, 7}, {DType::f64, dev}, gen), b = Tensor::randn({5}, {DType::f64, dev}, gen);
            double ss = 0;
            for (double v : host(a)) ss += v * v;
            for (double v : host(b)) ss += v * v;
            const double norm = std::sqrt(ss);
            // below the limit: nothing changes, bit for bit
            Tensor a0 = a.clone(), b0 = b.clone();
            CHECK(clip_grad_norm({a, b}, norm * 2) == Approx(norm).epsilon(1e-14));
            CHECK(same_bits(a, a0));
            CHECK(same_bits(b, b0));
            // above: scaled by max / (norm + 1e-6), so the new norm is just under max
            CHECK(clip_grad_norm({a, Tensor(), b}, 1.0) == Approx(norm).epsilon(1e-14));
            const double coef = 1.0 / (norm + 1e-6);
            require_close(a, a0 * coef, 1e-14, 0, "a scaled");
            require_close(b, b0 * coef, 1e-14, 0, "b scaled");
            CHECK(global_norm({a, b}) == Approx(norm * coef).epsilon(1e-12));
            CHECK(global_norm({}) == 0.0);
            // f32 gradients: norm in double from f32 sums of squares
            Tensor c = Tensor::full({1000}, 0.5, {DType::f32, dev});
            CHECK(global_norm({c}) == Approx(std::sqrt(250.0)).epsilon(1e-6));
        }
    }
    REQUIRE_ERROR_WITH(clip_grad_norm({Tensor::zeros({2})}, -1), "clip_grad_norm", "max_norm is -1");
    Tensor p = Tensor::ones({2});
    CHECK(grads_of({{"p", p}}).empty());
    set_grad(p, Tensor::ones({2}));
    CHECK(grads_of({{"p", p}}).size() == 1);
}

TEST_CASE("clip: CUDA matches CPU", "[train][parity][cuda]") {
    MG_REQUIRE_CUDA();
    Generator gen(8);
    Tensor a = Tensor::uniform({100003}, -2, 2, {}, gen);
    Tensor ag = a.to(Device::cuda());
    clip_grad_value({a}, 1.0);
    clip_grad_value({ag}, 1.0);
    CHECK(same_bits(a, ag)); // a clamp is exact
    Tensor b = Tensor::randn({4097}, {}, gen), bg = b.to(Device::cuda());
    // f32 sums of squares reduced in different orders on each device
    CHECK(clip_grad_norm({bg}, 1.0) == Approx(clip_grad_norm({b}, 1.0)).epsilon(1e-5));
    require_close(bg, b, 1e-5, 1e-7, "norm-clipped");
}
