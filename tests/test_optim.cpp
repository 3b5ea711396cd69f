// tests/test_optim.cpp: AdamW (train/optim.h) against a double reference, closed forms, a
// quadratic, the state round trip, bad inputs, CUDA against CPU, and the multi-tensor launches
// it shares with clipping and the guard.
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

// ==== AdamW ===================================================================================

TEST_CASE("AdamW: steps match the double reference (both styles, decay on/off, f32/f64)", "[train]") {
    for (Device dev : devices())
        for (DType dt : {DType::f64, DType::f32})
            for (AdamWStyle style : {AdamWStyle::Transformers, AdamWStyle::Torch})
                for (bool decay : {true, false})
                    for (int64_t n : {1, 7, 37}) {
                        SECTION(fmt::format("adamw(n={}, {}, {}, {}, decay={})", n, dev.str(), dtype_name(dt),
                                            adamw_style_name(style), decay)) {
                            Generator gen(100 + uint64_t(n));
                            Tensor p = Tensor::randn({n}, {dt, dev}, gen);
                            AdamWOptions o;
                            o.lr = 3e-2;
                            o.style = style;
                            o.eps = 1e-3; // large enough that its placement (style) matters in the values
                            if (!decay) o.no_decay = [](const std::string&) { return true; };
                            AdamW opt({{"w", p}}, o);
                            std::vector<double> rp = host(p), rm(size_t(n), 0.0), rv(size_t(n), 0.0);
                            std::vector<std::vector<double>> grads;
                            for (int s = 0; s < 5; ++s) {
                                // a gradient scale that varies per step, so bias correction matters
                                Tensor g = Tensor::randn({n}, {dt, dev}, gen) * (0.1 + s);
                                set_grad(p, g);
                                opt.step();
                                grads.push_back(host(g));
                            }
                            adamw_ref(rp, rm, rv, grads, o, decay);
                            REQUIRE(opt.step_count(0) == 5);
                            // f64: only rounding of a handful of operations; f32: 5 steps of f32
                            // rounding on values of size ~1
                            const double tol = dt == DType::f64 ? 1e-12 : 2e-6;
                            auto st = opt.state_tensors();
                            require_close(p, Tensor::from_vector(rp, {n}), tol, tol, "param");
                            require_close(st[0].second, Tensor::from_vector(rm, {n}), tol, tol, "exp_avg");
                            require_close(st[1].second, Tensor::from_vector(rv, {n}), tol, tol, "exp_avg_sq");
                        }
                    }
}

TEST_CASE("AdamW: a constant gradient follows the closed form", "[train]") {
    // Torch style, constant g: m_hat = g and v_hat = g^2 exactly, so each step is
    //   p <- (1 - lr wd) p - lr g / (|g| + eps),  giving after t steps
    //   p_t = q^t p_0 - lr u (1 - q^t) / (lr wd),   q = 1 - lr wd,  u = g / (|g| + eps).
    AdamWOptions o;
    o.style = AdamWStyle::Torch;
    o.lr = 0.05;
    o.weight_decay = 0.3;
    o.eps = 1e-2;
    const std::vector<double> p0 = {1.5, -0.25, 3.0}, g = {0.7, -2.0, 1e-3};
    Tensor p = Tensor::from_vector(p0, {3});
    AdamW opt({{"p", p}}, o);
    Tensor gt = Tensor::from_vector(g, {3});
    for (int t = 1; t <= 25; ++t) {
        set_grad(p, gt);
        opt.step();
        const double q = 1 - o.lr * o.weight_decay, qt = std::pow(q, t);
        std::vector<double> expect;
        for (size_t i = 0; i < 3; ++i) {
            const double u = g[i] / (std::fabs(g[i]) + o.eps);
            expect.push_back(qt * p0[i] - o.lr * u * (1 - qt) / (o.lr * o.weight_decay));
        }
        // f64: rounding only (the closed form sums a geometric series the loop accumulates)
        require_close(p, Tensor::from_vector(expect, {3}), 1e-12, 1e-12, fmt::format("step {}", t));
    }
    // Transformers style, no decay: step t moves by lr g / (|g| + eps / sqrt(1 - b2^t)).
    o.style = AdamWStyle::Transformers;
    o.weight_decay = 0;
    Tensor p2 = Tensor::from_vector(p0, {3});
    AdamW opt2({{"p", p2}}, o);
    std::vector<double> expect = p0;
    for (int t = 1; t <= 10; ++t) {
        set_grad(p2, gt);
        opt2.step();
        for (size_t i = 0; i < 3; ++i)
            expect[i] -= o.lr * g[i] / (std::fabs(g[i]) + o.eps / std::sqrt(1 - std::pow(o.beta2, t)));
    }
    require_close(p2, Tensor::from_vector(expect, {3}), 1e-12, 1e-12, "transformers style");
}

// The fixed point of AdamW on a_i (p - c)^2 / 2: there m_hat = g, v_hat = g^2 (a constant g), so
// the update u = g / (|g| + eps) balances the decay: wd p = -k u, with k = 1 for the Torch style
// and k = 1 - lr wd for the Transformers style (its decay scales the already-updated p). For
// c > 0, y = c - p > 0 solves  wd a y^2 + (k a + wd eps - wd c a) y - wd c eps = 0  (c < 0 by
// symmetry). With wd = 0.1, c = 20 puts it near k / wd = 10, far from c: decay visibly matters.
static double adamw_fixed_point(double a, double c, double wd, double eps, double k) {
    const double cc = std::fabs(c), A = wd * a, B = k * a + wd * eps - wd * cc * a, C = -wd * cc * eps;
    const double y = (-B + std::sqrt(B * B - 4 * A * C)) / (2 * A);
    return std::copysign(cc - y, c);
}

TEST_CASE("AdamW: a quadratic converges to the decoupled-decay fixed point", "[train]") {
    // loss = sum_i a_i (p_i - c_i)^2 / 2, gradients from autograd.
    const std::vector<double> a = {1, 2, 0.5, 4}, c = {20, -15, 0.5, 3};
    for (AdamWStyle style : {AdamWStyle::Transformers, AdamWStyle::Torch}) {
        for (bool cosine : {true, false}) {
            SECTION(fmt::format("{}, {} lr", adamw_style_name(style), cosine ? "cosine" : "constant")) {
                AdamWOptions o;
                o.style = style;
                o.lr = 0.1;
                Tensor p = Tensor::from_vector(std::vector<double>{0.3, -0.2, 2.0, -1.0}, {4});
                p.set_requires_grad(true);
                Tensor at = Tensor::from_vector(a, {4}), ct = Tensor::from_vector(c, {4});
                AdamW opt({{"p", p}}, o);
                LrSchedule sched{cosine ? ScheduleKind::Cosine : ScheduleKind::Constant, o.lr, 0, 3000, 0.1, {}};
                for (int64_t s = 0; s < sched.total_steps; ++s) {
                    opt.set_lr(sched.at(s));
                    opt.zero_grad();
                    Tensor d = p - ct;
                    Tensor loss = sum(at * d * d) * 0.5;
                    loss.backward();
                    opt.step();
                }
                const std::vector<double> v = p.to_vector<double>();
                INFO("p = " << v[0] << ", " << v[1] << ", " << v[2] << ", " << v[3]);
                const bool torch = style == AdamWStyle::Torch;
                if (cosine) {
                    // lr -> 0: the fixed point with k = 1 for both styles. Torch's fixed point does
                    // not move with lr, so the iterate reaches it (to the final steps' lr). The
                    // Transformers fixed point moves from 9.9 (lr 0.1) to 10 as lr decays, faster
                    // than it relaxes (rate lr wd per step): it lags by ~0.03 on the decay-bound
                    // elements 0 and 1.
                    for (size_t i = 0; i < 4; ++i) {
                        const double pstar = adamw_fixed_point(a[i], c[i], o.weight_decay, o.eps, 1.0);
                        INFO("element " << i << ": p* = " << pstar);
                        CHECK(std::fabs(v[i] - pstar) < (torch || i >= 2 ? 1e-4 : 0.05));
                    }
                    CHECK(std::fabs(v[0] - 10.0) < 0.05); // decay pulled it from c = 20 to ~1/wd
                } else {
                    // constant lr: the decay-bound elements sit exactly at the style's fixed point
                    // (elements 2 and 3, near c, oscillate with amplitude ~lr and are not checked)
                    const double k = torch ? 1.0 : 1.0 - o.lr * o.weight_decay;
                    for (size_t i = 0; i < 2; ++i) {
                        const double pstar = adamw_fixed_point(a[i], c[i], o.weight_decay, o.eps, k);
                        INFO("element " << i << ": p* = " << pstar);
                        CHECK(v[i] == Approx(pstar).epsilon(1e-9));
                    }
                }
            }
        }
    }
}

TEST_CASE("AdamW: skipped parameters, no_decay predicate, zero_grad", "[train]") {
    CHECK(mamba_ssm_no_decay("layers.0.mixer.A_log"));
    CHECK(mamba_ssm_no_decay("backbone.layers.3.mixer.D"));
    CHECK(mamba_ssm_no_decay("D"));
    CHECK_FALSE(mamba_ssm_no_decay("layers.0.mixer.dt_proj.bias"));
    CHECK_FALSE(mamba_ssm_no_decay("layers.0.mixer.in_proj.weight"));
    CHECK_FALSE(mamba_ssm_no_decay("layers.0.mixer.Dx"));

    Tensor w = Tensor::randn({3, 2}, {DType::f64}), a_log = Tensor::randn({4}, {DType::f64});
    AdamWOptions o;
    o.no_decay = mamba_ssm_no_decay;
    AdamW opt({{"layers.0.mixer.in_proj.weight", w}, {"layers.0.mixer.A_log", a_log}}, o);
    CHECK(opt.decays(0));
    CHECK_FALSE(opt.decays(1));
    // A_log has no gradient: untouched, its step count stays 0
    const std::vector<double> before = a_log.to_vector<double>();
    set_grad(w, Tensor::randn({3, 2}, {DType::f64}));
    opt.step();
    CHECK(opt.step_count(0) == 1);
    CHECK(opt.step_count(1) == 0);
    CHECK(a_log.to_vector<double>() == before);
    opt.zero_grad();
    CHECK_FALSE(w.grad().defined());
    // a zero gradient with no decay leaves the parameter exactly as it was
    set_grad(a_log, Tensor::zeros({4}, {DType::f64}));
    opt.step();
    CHECK(a_log.to_vector<double>() == before);
}

TEST_CASE("AdamW: lr_scale multiplies one parameter's step and decay; 0 freezes it", "[train]") {
    // the same parameter and gradient under lr (scale 0.25) and under lr / 4 (scale 1): the same
    // update to the last bit, decay included; scale 0 leaves it exactly as it was
    Generator gen(11);
    const Tensor p0 = Tensor::randn({4, 3}, {DType::f64}, gen), g = Tensor::randn({4, 3}, {DType::f64}, gen);
    Tensor a = p0.clone(), b = p0.clone(), frozen = p0.clone();
    AdamWOptions scaled;
    scaled.lr = 1e-2;
    scaled.lr_scale = [](const std::string& name) { return name == "a" ? 0.25 : 0.0; };
    AdamWOptions plain;
    plain.lr = 1e-2 * 0.25;
    AdamW opt_a({{"a", a}, {"frozen", frozen}}, scaled), opt_b({{"b", b}}, plain);
    CHECK(opt_a.lr_scale(0) == 0.25);
    CHECK(opt_a.lr_scale(1) == 0.0);
    for (int s = 0; s < 3; ++s) {
        set_grad(a, g);
        set_grad(frozen, g);
        set_grad(b, g);
        opt_a.step();
        opt_b.step();
    }
    CHECK(a.to_vector<double>() == b.to_vector<double>());
    CHECK(a.to_vector<double>() != p0.to_vector<double>());
    CHECK(frozen.to_vector<double>() == p0.to_vector<double>());
    CHECK(nlohmann::json::parse(opt_a.state_json())["lr_scale"]["frozen"] == 0.0);
    AdamWOptions bad;
    bad.lr_scale = [](const std::string&) { return -1.0; };
    REQUIRE_ERROR_WITH(AdamW({{"w", p0.clone()}}, bad), "AdamW", "lr_scale of 'w' is -1");
}

TEST_CASE("AdamW: state round trip continues bit-identically", "[train]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(5);
            Tensor a = Tensor::randn({5, 3}, {DType::f32, dev}, gen), b = Tensor::randn({7}, {DType::f32, dev}, gen);
            std::vector<Tensor> gs;
            for (int s = 0; s < 5; ++s) gs.push_back(Tensor::randn({5, 3}, {DType::f32, dev}, gen));
            AdamW opt({{"a", a}, {"b", b}});
            for (int s = 0; s < 3; ++s) {
                set_grad(a, gs[size_t(s)]);
                if (s != 1) set_grad(b, gs[size_t(s)].reshape({15}).slice(0, 0, 7));
                else b.zero_grad();
                opt.step();
            }
            Tensor a2 = a.clone(), b2 = b.clone();
            AdamWOptions o2;
            o2.lr = 0.5; // restored from the state
            AdamW opt2({{"a", a2}, {"b", b2}}, o2);
            std::map<std::string, Tensor> st;
            for (auto& [k, v] : opt.state_tensors()) st[k] = v.clone();
            opt2.load_state(st, opt.state_json());
            CHECK(opt2.lr() == opt.lr());
            CHECK(opt2.step_count(0) == 3);
            CHECK(opt2.step_count(1) == 2);
            b.zero_grad(); // b has no gradient in the remaining steps
            for (int s = 3; s < 5; ++s) {
                set_grad(a, gs[size_t(s)]);
                set_grad(a2, gs[size_t(s)]);
                opt.step();
                opt2.step();
            }
            CHECK(same_bits(a, a2));
            CHECK(same_bits(b, b2));
            // a state for other parameters is refused before anything changes
            AdamW opt3({{"a", a2}, {"c", b2}});
            REQUIRE_ERROR_WITH(opt3.load_state(st, opt.state_json()), "AdamW::load_state", "'c'");
            CHECK(opt3.step_count(0) == 0);
            st.erase("optimizer.exp_avg_sq.b");
            REQUIRE_ERROR_WITH(opt2.load_state(st, opt.state_json()), "optimizer.exp_avg_sq.b", "missing");
            REQUIRE_ERROR_WITH(opt2.load_state(st, "{not json"), "not valid JSON");
        }
    }
}

TEST_CASE("AdamW: bad parameters and gradients", "[train]") {
    Tensor w = Tensor::randn({4, 3});
    REQUIRE_ERROR_WITH(AdamW({{"w", w}, {"w", w}}), "AdamW", "'w' appears twice");
    REQUIRE_ERROR_WITH(AdamW({{"emb", w}, {"lm_head", w.view({12}).view({4, 3})}}), "AdamW", "'emb' and 'lm_head'",
                       "tied");
    REQUIRE_ERROR_WITH(AdamW({{"wt", w.transpose(0, 1)}}), "AdamW", "'wt'", "(3,4) f32 cpu", "not contiguous");
    REQUIRE_ERROR_WITH(AdamW({{"i", Tensor::zeros({2}, {DType::i32})}}), "AdamW", "'i'", "i32");
    AdamWOptions o;
    o.beta2 = 1.0;
    REQUIRE_ERROR_WITH(AdamW({{"w", w}}, o), "AdamW", "betas");
    AdamW opt({{"w", w}});
    set_grad(w, Tensor::randn({3, 4}));
    REQUIRE_ERROR_WITH(opt.step(), "AdamW", "gradient of 'w'", "(3,4) f32 cpu", "(4,3) f32 cpu");
    REQUIRE_ERROR_WITH(parse_adamw_style("adam"), "optimizer.style", "'adam'");
}

TEST_CASE("AdamW: CUDA step matches CPU in f32", "[train][parity][cuda]") {
    MG_REQUIRE_CUDA();
    Generator gen(9);
    for (int64_t n : {1, 37, 100003}) {
        Tensor pc = Tensor::randn({n}, {}, gen), gc = Tensor::randn({n}, {}, gen);
        Tensor pg = pc.to(Device::cuda()), gg = gc.to(Device::cuda());
        for (AdamWStyle style : {AdamWStyle::Transformers, AdamWStyle::Torch}) {
            AdamWOptions o;
            o.style = style;
            AdamW oc({{"p", pc}}, o), og({{"p", pg}}, o);
            for (int s = 0; s < 3; ++s) {
                set_grad(pc, gc * double(s + 1));
                set_grad(pg, gg * double(s + 1));
                oc.step();
                og.step();
            }
            // the same f32 formula; FMA contraction may differ between the compilers
            require_close(pg, pc, 1e-6, 1e-6, fmt::format("adamw cuda vs cpu n={}", n));
            require_close(og.state_tensors()[1].second, oc.state_tensors()[1].second, 1e-6, 1e-9, "exp_avg_sq");
        }
    }
}

TEST_CASE("AdamW, clip and guard: many CUDA tensors per launch match the CPU", "[train][parity][cuda]") {
    MG_REQUIRE_CUDA();
    // 61 tensors (more than two multi-tensor launches of cuda::kSlotsPerLaunch), f32 and f64
    // interleaved, sizes around the 1024-element chunk and block boundaries, one empty.
    Generator gen(21);
    const std::vector<int64_t> sizes = {1, 1023, 1024, 1025, 0, 4097, 31, 70001, 3, 2048};
    NamedTensors cpu, gpu;
    for (int k = 0; k < 61; ++k) {
        const DType dt = k % 3 == 1 ? DType::f64 : DType::f32;
        const int64_t n = sizes[size_t(k) % sizes.size()] + k;
        Tensor p = Tensor::randn({n}, {dt}, gen);
        cpu.emplace_back(fmt::format("p{}", k), p);
        gpu.emplace_back(fmt::format("p{}", k), p.to(Device::cuda()));
    }
    AdamWOptions o;
    o.weight_decay = 0.1;
    AdamW oc(cpu, o), og(gpu, o);
    for (int s = 0; s < 3; ++s) {
        for (size_t k = 0; k < cpu.size(); ++k) {
            Tensor g = Tensor::uniform(cpu[k].second.shape(), -3, 3, {cpu[k].second.dtype()}, gen);
            set_grad(cpu[k].second, g);
            set_grad(gpu[k].second, g.to(Device::cuda()));
        }
        clip_grad_value(grads_of(cpu), 1.0);
        clip_grad_value(grads_of(gpu), 1.0);
        for (size_t k = 0; k < cpu.size(); ++k) CHECK(same_bits(cpu[k].second.grad(), gpu[k].second.grad()));
        check_finite(s, 0.5, gpu); // all finite
        oc.step();
        og.step();
    }
    for (size_t k = 0; k < cpu.size(); ++k)
        require_close(gpu[k].second, cpu[k].second, 1e-6, 1e-6, fmt::format("adamw tensor {}", k));
    // a NaN in tensor 50 (third launch) and an Inf in tensor 40 (f64, second launch): the guard
    // names the first in list order, wherever it sits among the launches and dtypes
    for (int k : {50, 40}) {
        const Tensor& p = gpu[size_t(k)].second;
        std::vector<double> v = p.to(DType::f64).to(Device::cpu()).to_vector<double>();
        v[v.size() - 1] = k == 50 ? NAN : INFINITY;
        set_grad(p, Tensor::from_vector(v, p.shape(), {p.dtype(), Device::cuda()}));
    }
    REQUIRE(gpu[40].second.dtype() == DType::f64);
    REQUIRE_ERROR_WITH(check_finite(9, 0.5, gpu), "step 9", "gradient 'p40'", "1 non-finite value;", "inf");
}
