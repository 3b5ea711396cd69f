// tests/test_train_utils.cpp: the training infrastructure that does not depend on the model:
// AdamW (against a double reference, closed forms, a quadratic, state round trip), LR schedules,
// gradient clipping, the NaN/Inf guard, safetensors checkpoints (round trip, corrupt files,
// atomic writes, Python safetensors compatibility) and run metrics / the progress line.
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
#include "train/checkpoint.h"
#include "train/clip.h"
#include "train/guard.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"

using namespace mg;
using namespace mg::train;
using mg::test::devices;
using mg::test::require_close;
using mg::test::TempDir;

namespace {

namespace fs = std::filesystem;

void set_grad(const Tensor& p, const Tensor& g) { p.impl().grad = g.impl_ptr(); }

std::vector<double> host(const Tensor& t) { return t.detach().to(DType::f64).to(Device::cpu()).to_vector<double>(); }

// Bit equality of two tensors' contents (same dtype and shape).
bool same_bits(const Tensor& a, const Tensor& b) {
    if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
    Tensor ha = a.detach().to(Device::cpu()).contiguous(), hb = b.detach().to(Device::cpu()).contiguous();
    return std::memcmp(ha.raw_data(), hb.raw_data(), size_t(ha.numel()) * dtype_size(ha.dtype())) == 0;
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_all(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}
// A safetensors file from a header text and a data section, as a hostile writer would make it.
std::string raw_safetensors(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + data;
}

} // namespace

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
    REQUIRE_ERROR_WITH(opt.step({Tensor::zeros({1}, {DType::f32, Device::cuda(0)})}), "AdamW::step", "skip word");
}

// ==== schedules ===============================================================================

TEST_CASE("schedule: warmup then cosine, values at the boundaries", "[train]") {
    // transformers' get_cosine_schedule_with_warmup lr_lambda, written out independently
    auto hf = [](int64_t s, int64_t W, int64_t T) {
        if (s < W) return double(s) / double(std::max<int64_t>(1, W));
        double prog = double(s - W) / double(std::max<int64_t>(1, T - W));
        return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * prog)));
    };
    LrSchedule s{ScheduleKind::Cosine, 2e-3, 0, 100, 0.1, {}};
    REQUIRE(s.warmup() == 10);
    CHECK(s.at(0) == 0.0);
    CHECK(s.at(5) == Approx(1e-3));
    CHECK(s.at(10) == Approx(2e-3));
    CHECK(s.at(55) == Approx(1e-3));
    CHECK(s.at(100) == Approx(0).margin(1e-18));
    CHECK(s.at(250) == Approx(0).margin(1e-18));
    for (int64_t k = 0; k <= 100; ++k) CHECK(s.at(k) == Approx(2e-3 * hf(k, 10, 100)).margin(1e-15));
    // min_lr floor
    s.min_lr = 1e-4;
    CHECK(s.at(10) == Approx(2e-3));
    CHECK(s.at(55) == Approx(1e-4 + 0.5 * (2e-3 - 1e-4)));
    CHECK(s.at(100) == Approx(1e-4));
    CHECK(s.at(1000) == Approx(1e-4));
    // warmup count as Python's int(0.1 * T): 0.1 * 7 = 0.7 -> 0 warmup steps
    LrSchedule s7{ScheduleKind::Cosine, 1.0, 0, 7, 0.1, {}};
    CHECK(s7.warmup() == 0);
    CHECK(s7.at(0) == 1.0);
    LrSchedule s59{ScheduleKind::Cosine, 1.0, 0, 59, 0.1, {}};
    CHECK(s59.warmup() == 5);
    // explicit warmup steps; W = T (all warmup) ends at the floor
    LrSchedule sw{ScheduleKind::Cosine, 1.0, 0, 4, 0.1, {}};
    sw.warmup_steps = 4;
    CHECK(sw.at(2) == 0.5);
    CHECK(sw.at(4) == 0.0);
}

TEST_CASE("schedule: constant, with and without warmup; bad arguments", "[train]") {
    LrSchedule c{ScheduleKind::Constant, 1e-3, 0, 50, 0.1, {}};
    CHECK(c.at(0) == 0.0);
    CHECK(c.at(4) == Approx(1e-3 * 4 / 5));
    CHECK(c.at(5) == 1e-3);
    CHECK(c.at(49) == 1e-3);
    CHECK(c.at(500) == 1e-3);
    c.warmup_fraction = 0;
    CHECK(c.at(0) == 1e-3);
    CHECK(parse_schedule("cosine") == ScheduleKind::Cosine);
    REQUIRE_ERROR_WITH(parse_schedule("linear"), "schedule", "'linear'");
    REQUIRE_ERROR_WITH(c.at(-1), "schedule", "step is -1");
    c.warmup_steps = 51;
    REQUIRE_ERROR_WITH(c.at(0), "schedule", "warmup_steps is 51");
}

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

// ==== safetensors and checkpoints =============================================================

TEST_CASE("safetensors: round trip is bit-exact for f32, f64, i32, scalars, empty and strided", "[train]") {
    TempDir dir("st_roundtrip");
    Generator gen(21);
    Tensor f = Tensor::randn({3, 5}, {}, gen);
    Tensor d = Tensor::randn({2, 1, 3}, {DType::f64}, gen);
    Tensor i = Tensor::from_vector(std::vector<int32_t>{-7, 0, 2147483647, -2147483647 - 1}, {4});
    Tensor s = Tensor::scalar(-0.0, {DType::f64});
    Tensor e = Tensor::zeros({0, 4});
    Tensor special = Tensor::from_vector(std::vector<float>{NAN, INFINITY, -INFINITY, 1e-45f}, {4});
    Tensor strided = f.transpose(0, 1); // written as its row-major (5,3) contents
    NamedTensors ts = {{"f", f}, {"d", d}, {"i", i}, {"s", s}, {"e", e}, {"special", special}, {"strided", strided}};
    Metadata meta = {{"format", "pt"}, {"quote\"key", "line\nbreak \u00e9 \\ {}"}, {"empty", ""}};
    const std::string path = dir.file("a.safetensors");
    save_safetensors(path, ts, meta);
    CHECK(dir.listing() == std::vector<std::string>{"a.safetensors"}); // no temp file left
    const std::string bytes = read_all(path);
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    CHECK((8 + n) % 8 == 0); // data section 8-byte aligned
    SafetensorsFile r = load_safetensors(path);
    CHECK(r.metadata == meta);
    REQUIRE(r.tensors.size() == ts.size());
    auto by = r.by_name();
    for (const auto& [name, t] : ts) {
        INFO(name);
        REQUIRE(by.count(name));
        CHECK(by[name].shape() == t.shape());
        CHECK(by[name].dtype() == t.dtype());
        CHECK(same_bits(by[name], t));
    }
    // no metadata at all; and onto a GPU when there is one
    save_safetensors(path, {{"i", i}});
    CHECK(load_safetensors(path).metadata.empty());
    if (cuda::available()) {
        SafetensorsFile g = load_safetensors(path, Device::cuda());
        CHECK(g.tensors[0].second.is_cuda());
        CHECK(same_bits(g.tensors[0].second, i));
    }
    REQUIRE_ERROR_WITH(save_safetensors(path, {{"a", f}, {"a", d}}), "save_safetensors", "'a' appears twice");
    REQUIRE_ERROR_WITH(save_safetensors(path, {{"__metadata__", f}}), "save_safetensors", "'__metadata__'");
    REQUIRE_ERROR_WITH(save_safetensors(path, {{"f", f}}, {{"bad", "\xff\xfe"}}), "save_safetensors", "a.safetensors",
                       "invalid UTF-8");
}

TEST_CASE("safetensors: corrupt files give errors naming the file and the tensor", "[train]") {
    TempDir dir("st_corrupt");
    const std::string good = dir.file("good.safetensors");
    save_safetensors(good, {{"w", Tensor::randn({4, 4})}, {"b", Tensor::randn({4})}}, {{"k", "v"}});
    const std::string bytes = read_all(good);
    const std::string p = dir.file("bad.safetensors");
    auto expect_error = [&](const std::string& content, std::vector<std::string> parts) {
        write_all(p, content);
        try {
            load_safetensors(p);
            FAIL("expected mg::Error for " << parts.back());
        } catch (const Error& e) {
            const std::string msg = e.what();
            INFO("message: " << msg);
            CHECK(msg.find("bad.safetensors") != std::string::npos);
            for (const auto& part : parts) {
                INFO("expected: " << part);
                CHECK(msg.find(part) != std::string::npos);
            }
        }
    };
    const std::string f32x4 = std::string(16, '\1');
    expect_error(bytes.substr(0, bytes.size() - 3), {"tensor 'b'", "truncated"});
    expect_error(bytes.substr(0, 5), {"too short"});
    expect_error(bytes.substr(0, 40), {"runs past the end", "truncated"});
    expect_error(raw_safetensors("{\"w\": {\"dtype\": \"F32\", ", f32x4), {"not valid JSON"});
    expect_error(raw_safetensors("[1, 2]", ""), {"expected an object"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", "\0\0\0\0"),
                 {"tensor 'w'", "dtype 'BF16' is not supported"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}})", f32x4),
                 {"tensor 'w'", "end past the 16-byte data section"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", f32x4),
                 {"tensor 'w'", "hold 16 bytes", "needs 12"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", f32x4),
                 {"tensor 'w'", "begin > end"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x4),
                 {"tensor 'w'", "negative"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
                                 f32x4),
                 {"tensor 'w'", "more elements than"});
    expect_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                 f32x4),
                 {"tensor 'b'", "overlap tensor 'a'"});
    expect_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", f32x4),
                 {"tensor 'a'", "hole"});
    expect_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x4),
                 {"trailing bytes"});
    expect_error(raw_safetensors(R"({"__metadata__":{"k":1}})", ""), {"__metadata__ entry 'k'", "expected a string"});
    expect_error(raw_safetensors(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", f32x4.substr(0, 8)),
                 {"tensor 'w'", "dtype"});
    std::string huge(8, '\xff');
    expect_error(huge + "{}", {"over the"});
    REQUIRE_ERROR_WITH(load_safetensors(dir.file("missing.safetensors")), "cannot open", "missing.safetensors");
    // an empty header object is a valid, empty file
    write_all(p, raw_safetensors("{}      ", ""));
    CHECK(load_safetensors(p).tensors.empty());
}

TEST_CASE("safetensors: a failed write leaves the old file and no temp file", "[train]") {
    TempDir dir("st_atomic");
    Tensor w = Tensor::randn({8});
    // the directory does not exist: nothing is created anywhere
    REQUIRE_ERROR_WITH(save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"w", w}}), "AtomicFile",
                       "x.safetensors");
    CHECK(dir.listing().empty());
    // the target is a directory: the temp file is written, the rename fails, the temp is removed
    fs::create_directories(dir.path / "ckpt.safetensors");
    REQUIRE_ERROR_WITH(save_safetensors(dir.file("ckpt.safetensors"), {{"w", w}}), "AtomicFile", "rename",
                       "ckpt.safetensors");
    CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
    // a failure before writing (bad input) leaves an existing checkpoint untouched
    const std::string path = dir.file("last.safetensors");
    save_safetensors(path, {{"w", w}});
    const std::string before = read_all(path);
    REQUIRE_ERROR_WITH(save_safetensors(path, {{"w", w}, {"w", w}}), "appears twice");
    CHECK(read_all(path) == before);
    CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors", "last.safetensors"});
}

TEST_CASE("checkpoint: parameters, optimizer and trainer state resume bit-identically", "[train]") {
    TempDir dir("ckpt");
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(31);
            auto make = [&](uint64_t seed) {
                Generator g(seed);
                return NamedTensors{{"backbone.embedding.weight", Tensor::randn({6, 4}, {DType::f32, dev}, g)},
                                    {"backbone.layers.0.mixer.A_log", Tensor::randn({4, 3}, {DType::f32, dev}, g)},
                                    {"backbone.layers.0.mixer.D", Tensor::randn({4}, {DType::f32, dev}, g)}};
            };
            NamedTensors params = make(1);
            AdamWOptions o;
            o.no_decay = mamba_ssm_no_decay;
            AdamW opt(params, o);
            std::vector<std::vector<Tensor>> grads;
            for (int s = 0; s < 5; ++s) {
                std::vector<Tensor> g;
                for (const auto& np : params) g.push_back(Tensor::randn(np.second.shape(), {DType::f32, dev}, gen));
                grads.push_back(g);
            }
            auto run_step = [&](const NamedTensors& ps, AdamW& op, int s) {
                for (size_t k = 0; k < ps.size(); ++k) set_grad(ps[k].second, grads[size_t(s)][k]);
                op.step();
            };
            for (int s = 0; s < 3; ++s) run_step(params, opt, s);
            TrainerState st{2, 3, 17, 0xDEADBEEFCAFEULL, 1ULL << 40};
            const std::string config = R"({"model":{"d_model":4,"n_layer":1},"lr":0.001})";
            const std::string path = dir.file(fmt::format("step3_{}.safetensors", dev.kind));
            save_checkpoint(path, params, &opt, st, config, {{"note", "test"}});

            NamedTensors fresh = make(2);
            AdamW opt2(fresh, o);
            LoadedCheckpoint lc = load_checkpoint(path, fresh, &opt2);
            CHECK(lc.state == st);
            CHECK(lc.config_json == config);
            CHECK(lc.metadata.at("note") == "test");
            CHECK(lc.metadata.at("format") == "pt");
            for (int s = 3; s < 5; ++s) {
                run_step(params, opt, s);
                run_step(fresh, opt2, s);
            }
            for (size_t k = 0; k < params.size(); ++k) CHECK(same_bits(params[k].second, fresh[k].second));

            // the same file as a plain model file: optimizer tensors are ignored without an optimizer
            NamedTensors model_only = make(3);
            load_checkpoint(path, model_only, nullptr);
            // mismatches are refused before anything changes
            NamedTensors wrong = make(4);
            wrong[2].second = Tensor::randn({5}, {DType::f32, dev}, gen);
            Tensor keep = wrong[0].second.clone();
            REQUIRE_ERROR_WITH(load_checkpoint(path, wrong, nullptr), "load_checkpoint",
                               "'backbone.layers.0.mixer.D'", fmt::format("(4) f32 cpu"), "(5) f32");
            CHECK(same_bits(wrong[0].second, keep));
            NamedTensors fewer(params.begin(), params.begin() + 2);
            REQUIRE_ERROR_WITH(load_checkpoint(path, fewer, nullptr), "'backbone.layers.0.mixer.D'", "matches no parameter");
            load_checkpoint(path, fewer, nullptr, /*allow_unexpected=*/true);
            NamedTensors more = make(5);
            more.emplace_back("lm_head.weight", Tensor::randn({6, 4}, {DType::f32, dev}, gen));
            REQUIRE_ERROR_WITH(load_checkpoint(path, more, nullptr), "'lm_head.weight'", "not in the file");
            // a model-only file cannot restore an optimizer
            const std::string model_path = dir.file("model.safetensors");
            save_checkpoint(model_path, params, nullptr, st, config);
            AdamW opt3(make(6), o);
            REQUIRE_ERROR_WITH(load_checkpoint(model_path, opt3.params(), &opt3), "no optimizer state");
            REQUIRE_ERROR_WITH(save_checkpoint(model_path, params, nullptr, st, config, {{"format", "x"}}), "reserved");
        }
    }
}

TEST_CASE("safetensors: Python's safetensors reads our files and we read its files", "[train][python]") {
    // Runs when python3 with numpy and safetensors is installed (pip install safetensors numpy).
    const std::string script = "tests/safetensors_compat.py";
    if (!fs::exists(script)) {
        WARN("skipped: " << script << " not found (run the suite from the repository root)");
        return;
    }
    if (std::system("python3 -c 'import numpy, safetensors' >/dev/null 2>&1") != 0) {
        WARN("skipped: python3 with numpy and safetensors is not installed");
        return;
    }
    TempDir dir("st_python");
    const std::string ours = dir.file("ours.safetensors"), theirs = dir.file("theirs.safetensors");
    Tensor f = Tensor::from_vector(std::vector<float>{0.5f, -1.25f, 3.0f, 1e-30f, -0.0f, 7.0f}, {2, 3});
    Tensor d = Tensor::from_vector(std::vector<double>{1.0 / 3.0, -2.5e300}, {2, 1});
    Tensor i = Tensor::from_vector(std::vector<int32_t>{-1, 0, 1, 2147483647}, {4});
    save_checkpoint(ours, {{"model.f", f}, {"model.d", d}, {"model.i", i}}, nullptr, TrainerState{1, 2, 3, 4, 5},
                    R"({"name":"py"})");
    const std::string cmd = fmt::format("python3 {} {} {}", script, ours, theirs);
    REQUIRE(std::system(cmd.c_str()) == 0);
    SafetensorsFile r = load_safetensors(theirs);
    auto by = r.by_name();
    REQUIRE(by.count("np.f32"));
    CHECK(by["np.f32"].shape() == Shape{2, 3});
    CHECK(by["np.f32"].to_vector<float>() == std::vector<float>{0, 1.5f, 3, 4.5f, 6, 7.5f});
    CHECK(by["np.f64"].shape() == Shape{3});
    CHECK(by["np.f64"].to_vector<double>() == std::vector<double>{0.1, 0.2, -1e-300});
    CHECK(by["np.i32"].to_vector<int32_t>() == std::vector<int32_t>{5, -6});
    CHECK(by["np.scalar"].shape() == Shape{});
    CHECK(by["np.scalar"].item() == 2.0);
    CHECK(r.metadata.at("from") == "python");
}

// ==== run directory, metrics, progress =========================================================

TEST_CASE("metrics: run directory, config.json and metrics.jsonl", "[train]") {
    TempDir dir("metrics");
    nlohmann::json config = {{"model", {{"d_model", 64}}}, {"lr", 1e-3}};
    const std::string run = make_run_dir(dir.file("runs"), "mqar-64", config);
    CHECK(run == dir.file("runs/mqar-64"));
    CHECK(nlohmann::json::parse(read_all(run + "/config.json")) == config);
    // again (a resumed run): the directory is kept, config.json replaced
    config["lr"] = 2e-3;
    make_run_dir(dir.file("runs"), "mqar-64", config);
    CHECK(nlohmann::json::parse(read_all(run + "/config.json"))["lr"] == 2e-3);
    REQUIRE_ERROR_WITH(make_run_dir(dir.file("runs"), "a/b", config), "run directory", "'a/b'");
    REQUIRE_ERROR_WITH(make_run_dir(dir.file("runs"), "", config), "run directory");

    const std::string path = run + "/metrics.jsonl";
    {
        MetricsLog log(path);
        log.write({{"step", 1}, {"loss", 2.5}, {"split", "train"}});
        log.write({{"step", 2}, {"loss", 2.25}, {"note", "multi\nline"}});
        // flushed: readable while the log is still open
        const std::string text = read_all(path);
        CHECK(std::count(text.begin(), text.end(), '\n') == 2);
        REQUIRE_ERROR_WITH(log.write(nlohmann::json::array({1, 2})), "metrics", "JSON object");
    }
    {
        MetricsLog log(path); // appends
        log.write({{"step", 3}, {"accuracy", 0.5}});
    }
    std::ifstream in(path);
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    REQUIRE(lines.size() == 3);
    CHECK(lines[1]["note"] == "multi\nline");
    CHECK(lines[2]["step"] == 3);
    REQUIRE_ERROR_WITH(MetricsLog(dir.file("no/such/metrics.jsonl")), "metrics", "cannot open");
}

TEST_CASE("metrics: progress line formatting", "[train]") {
    Progress p;
    p.epoch = 3;
    p.epochs = 30;
    p.step = 120;
    p.total = 1000;
    p.loss = 1.23456;
    p.accuracy = 0.456;
    p.tokens_per_s = 12345;
    p.eta_s = 5025;
    CHECK(format_progress(p, 10) ==
          "epoch 3/30 | step 120/1000 [=>        ]  12.0% | loss 1.2346 | acc 45.6% | 12.3k tok/s | ETA 1:23:45");
    Progress q;
    q.step = 7;
    CHECK(format_progress(q) == "step 7 | ETA --");
    q.total = 7;
    CHECK(format_progress(q, 4) == "step 7/7 [====] 100.0% | ETA --");
    q.step = 0;
    CHECK(format_progress(q, 4) == "step 0/7 [>   ]   0.0% | ETA --");
    CHECK(format_duration(9.4) == "0:09");
    CHECK(format_duration(723) == "12:03");
    CHECK(format_duration(3723) == "1:02:03");
    CHECK(format_duration(NAN) == "--");
    CHECK(format_duration(-1) == "--");
    CHECK(format_si(950) == "950");
    CHECK(format_si(4.56e6) == "4.56M");
    CHECK(format_si(2.5e9) == "2.50G");
}

TEST_CASE("metrics: progress bar writes plain lines to a file and redraws on a terminal", "[train]") {
    Progress p;
    p.total = 10;
    {
        std::FILE* f = std::tmpfile();
        REQUIRE(f);
        {
            ProgressBar bar(f, 0.0, 3600.0); // not a TTY: a line per hour at most
            CHECK_FALSE(bar.is_tty());
            for (int s = 1; s <= 10; ++s) {
                p.step = s;
                bar.update(p);
            }
            bar.finish();
        }
        std::rewind(f);
        std::string out;
        for (int c; (c = std::fgetc(f)) != EOF;) out.push_back(char(c));
        std::fclose(f);
        // the first update and the final state, each on its own line, no carriage returns
        CHECK(out == format_progress({0, 0, 1, 10}) + "\n" + format_progress({0, 0, 10, 10}) + "\n");
    }
    // a pseudo-terminal: "\r" + line + clear-to-end-of-line, one newline at the end
    int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) {
        WARN("skipped the terminal half: no pseudo-terminal available");
        if (master >= 0) ::close(master);
        return;
    }
    std::FILE* tty = std::fopen(::ptsname(master), "w");
    REQUIRE(tty);
    {
        ProgressBar bar(tty, 0.0); // redraw on every update
        CHECK(bar.is_tty());
        p.step = 1;
        bar.update(p);
        p.step = 2;
        bar.update(p);
        bar.finish();
    }
    std::fclose(tty);
    std::string out;
    ::fcntl(master, F_SETFL, O_NONBLOCK);
    char buf[4096];
    for (ssize_t k; (k = ::read(master, buf, sizeof buf)) > 0;) out.append(buf, size_t(k));
    ::close(master);
    // the terminal's output processing may turn "\n" into "\r\n"
    const std::string l1 = format_progress({0, 0, 1, 10}), l2 = format_progress({0, 0, 2, 10});
    CHECK(out.rfind("\r" + l1 + "\x1b[K\r" + l2 + "\x1b[K", 0) == 0);
    CHECK(out.back() == '\n');
}
