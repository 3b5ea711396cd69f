// tests/test_mamba.cpp: nn/mamba.h: the recurrent step against the parallel forward, a gradcheck
// of a whole tiny LM (with and without global selection), CUDA against CPU, the init schemes'
// statistics, and bad inputs.
#include <cmath>
#include <set>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/mamba.h"
#include "nn/module.h"
#include "tensor/check.h"
#include "tests/helpers.h"
#include "tests/nn_helpers.h"

using namespace mg;
using namespace mg::nn;
using namespace mg::test;

// ---- forward: recurrent = parallel, gradients ---------------------------------------------------

TEST_CASE("nn: stepping token by token reproduces the parallel forward (f64)", "[nn]") {
    struct Case { bool gs; CausalConvMode mode; int64_t k_long; std::vector<int64_t> layers; GateInput in; };
    // k_long 5 < L = 9 so the long conv's state shifts out old tokens; 12 > L covers the other side
    const Case cases[] = {{false, CausalConvMode::direct, 5, {}, GateInput::raw},
                          {true, CausalConvMode::direct, 5, {}, GateInput::raw},
                          {true, CausalConvMode::fft, 5, {0}, GateInput::normalized},
                          {true, CausalConvMode::automatic, 12, {1}, GateInput::detached}};
    for (const Case& cs : cases) {
        MambaConfig cfg = small_config(cs.gs, cs.k_long, cs.mode);
        cfg.global_selection.layers = cs.layers;
        cfg.global_selection.gate_input = cs.in;
        for (Device dev : devices()) {
            Generator g(11);
            MambaLM model(cfg, {DType::f64, dev}, g);
            const int64_t B = 2, L = 9, V = cfg.padded_vocab();
            Tensor ids = random_ids(B, L, cfg.vocab_size, 5).to(dev);
            Tensor par = model.forward(ids);
            REQUIRE(par.shape() == Shape{B, L, V});
            InferenceState st = model.make_state(B);
            std::vector<Tensor> steps;
            for (int64_t t = 0; t < L; ++t) {
                Tensor logits = model.step(ids.narrow(1, t, 1).reshape({B}).contiguous(), st);
                REQUIRE(logits.shape() == Shape{B, V});
                CHECK_FALSE(logits.requires_grad());
                steps.push_back(logits.unsqueeze(1));
            }
            CHECK(st.position == L);
            // f64 end to end; the two forms sum the same terms in different orders (FFT vs direct
            // conv, chunked vs stepwise scan)
            mg::test::require_close(cat(steps, 1), par, 1e-9, 1e-9,
                                    fmt::format("step vs parallel (gs={}, mode={}, k_long={}, {})", cs.gs,
                                                causal_conv_mode_name(cs.mode), cs.k_long, dev.str()));
        }
    }
}

TEST_CASE("nn: gradcheck of a tiny MambaLM loss with respect to every parameter", "[nn][gradcheck]") {
    // (gate_input detached is a stop-gradient: by design not the function's derivative)
    for (int variant : {0, 1, 2}) {
        const bool gs = variant > 0;
        MambaConfig cfg;
        cfg.d_model = 8;
        cfg.n_layer = 1;
        cfg.vocab_size = 11;
        cfg.d_state = 4;
        cfg.global_selection.enabled = gs;
        cfg.global_selection.k_long = 3;
        if (variant == 2) cfg.global_selection.gate_input = GateInput::normalized;
        Generator g(21);
        MambaLM model(cfg, {DType::f64}, g);
        const int64_t B = 1, L = 5;
        Tensor ids = random_ids(B, L, cfg.vocab_size, 8);
        Tensor targets = random_ids(B, L, cfg.vocab_size, 9);
        NamedTensors np = model.named_parameters();
        std::vector<Tensor> params;
        GradcheckOptions opts;
        for (auto& [n, t] : np) {
            params.push_back(t);
            opts.names.push_back(n);
        }
        // the function reads the parameters through the model; gradcheck perturbs them in place
        GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) {
            return cross_entropy(model.forward(ids), targets);
        }, params, opts);
        INFO("global selection " << gs << ", variant " << variant << ": " << r.message);
        CHECK(r.ok);
        CHECK(r.num_checked == model.num_parameters());
    }
}

TEST_CASE("nn: an f32 model on cuda matches cpu, parallel and recurrent", "[nn][parity][cuda]") {
    MG_REQUIRE_CUDA();
    MambaConfig cfg = small_config(true, 5, CausalConvMode::fft);
    Generator g(12);
    MambaLM model(cfg, {}, g);
    Tensor ids = random_ids(2, 7, cfg.vocab_size, 4);
    Tensor cpu_logits = model.forward(ids);
    Tensor targets = random_ids(2, 7, cfg.vocab_size, 5);
    cross_entropy(cpu_logits, targets).backward();
    std::map<std::string, Tensor> cpu_grads;
    for (auto& [n, p] : model.named_parameters()) cpu_grads[n] = p.grad();
    model.zero_grad();
    model.to(Device::cuda());
    Tensor cuda_logits = model.forward(ids.to(Device::cuda()));
    // f32, sums in different orders on the two devices
    mg::test::require_close(cuda_logits, cpu_logits, 1e-4, 1e-4, "MambaLM logits cuda vs cpu");
    cross_entropy(cuda_logits, targets.to(Device::cuda())).backward();
    for (auto& [n, p] : model.named_parameters()) mg::test::require_close(p.grad(), cpu_grads[n], 1e-3, 1e-4, n + " grad");
    InferenceState st = model.make_state(2);
    for (int64_t t = 0; t < 7; ++t) {
        Tensor logits = model.step(ids.narrow(1, t, 1).reshape({2}).contiguous().to(Device::cuda()), st);
        mg::test::require_close(logits, cpu_logits.narrow(1, t, 1).reshape({2, cfg.padded_vocab()}), 1e-4, 1e-4,
                                fmt::format("step {} on cuda", t));
    }
}

// ---- initialisation -------------------------------------------------------------------------------

TEST_CASE("nn: init schemes: A_log, D, dt, embedding std, bounds, seeds", "[nn]") {
    MambaConfig cfg;
    cfg.d_model = 64; // D = 128, R = 4
    cfg.n_layer = 4;
    cfg.vocab_size = 1000;
    cfg.global_selection.enabled = true;
    cfg.global_selection.k_long = 16;
    auto stats = [](const Tensor& t) {
        std::vector<double> v = t.to(DType::f64).to_vector<double>();
        double m = 0, s = 0, lo = INFINITY, hi = -INFINITY;
        for (double x : v) m += x, lo = std::min(lo, x), hi = std::max(hi, x);
        m /= double(v.size());
        for (double x : v) s += (x - m) * (x - m);
        return std::array<double, 4>{m, std::sqrt(s / double(v.size())), lo, hi};
    };
    for (InitScheme scheme : {InitScheme::mamba, InitScheme::paper_code}) {
        cfg.init = scheme;
        Generator g(7);
        MambaLM model(cfg, {}, g);
        INFO("init " << init_scheme_name(scheme));
        const MambaMixer& mx = model.backbone.layers[2]->mixer;
        // A_log[d, n] = log(n + 1) exactly (as f32), D = 1, norms = 1
        std::vector<float> a = mx.A_log.to_vector<float>();
        for (int64_t d = 0; d < 128; ++d)
            for (int64_t n = 0; n < 16; ++n) REQUIRE(a[size_t(d * 16 + n)] == float(std::log(double(n + 1))));
        CHECK(stats(mx.D)[2] == 1.0);
        CHECK(stats(mx.D)[3] == 1.0);
        CHECK(stats(model.backbone.layers[0]->norm.weight)[2] == 1.0);
        CHECK(stats(model.backbone.norm_f.weight)[3] == 1.0);
        // embedding N(0, std^2) over 1000 x 64 draws: the sample std is within 1% (its relative
        // standard error is 1/sqrt(2n) = 0.09%)
        double want_std = scheme == InitScheme::mamba ? 0.02 : 0.1;
        auto e = stats(model.backbone.embedding.weight);
        CHECK(std::abs(e[1] / want_std - 1) < 0.01);
        CHECK(std::abs(e[0]) < 0.01 * want_std);
        // uniform bounds: in_proj 1/sqrt(d), dt_proj.weight R^-1/2, conv 1/sqrt(K), long conv
        // 1/sqrt(K_long), out_proj 1/sqrt(D) (/ sqrt(n_layer) for mamba)
        auto within = [&](const Tensor& t, double bound) {
            auto s = stats(t);
            CHECK(s[2] >= -bound);
            CHECK(s[3] <= bound);
            CHECK(s[3] > 0.9 * bound); // uses the range: thousands of draws
        };
        within(mx.in_proj.weight, 1 / 8.0);
        within(mx.dt_proj.weight, 1 / 2.0);
        within(mx.conv1d.weight, 1 / 2.0);
        within(mx.long_conv_as<LongConv>().weight, 1 / 4.0);
        REQUIRE_ERROR_WITH(mx.long_conv_as<FlashLongConv>(), "long_conv_as", "another kind");
        within(mx.out_proj.weight, (1 / std::sqrt(128.0)) / (scheme == InitScheme::mamba ? 2.0 : 1.0));
        // dt: softplus(dt_proj.bias) log-uniform in [1e-3, 1e-1] (mamba); bias 0 (paper-code)
        std::vector<double> bias = mx.dt_proj.bias.to(DType::f64).to_vector<double>();
        if (scheme == InitScheme::mamba) {
            double mean_log = 0;
            for (double b : bias) {
                double dt = std::log1p(std::exp(b));
                CHECK(dt >= 1e-3 * (1 - 1e-5)); // f32 rounding of the bias
                CHECK(dt <= 1e-1 * (1 + 1e-5));
                mean_log += std::log(dt);
            }
            mean_log /= double(bias.size());
            // log dt uniform on [ln 1e-3, ln 1e-1]: mean ln 1e-2, std 1.33 / sqrt(128) = 0.12
            CHECK(std::abs(mean_log - std::log(1e-2)) < 0.5);
        } else {
            for (double b : bias) CHECK(b == 0.0);
        }
        // parameters are leaves requiring grad after the re-inits
        CHECK(mx.dt_proj.bias.requires_grad());
        CHECK(mx.out_proj.weight.requires_grad());
    }
    // the seed fixes the model; another seed changes it
    Generator g1(5), g2(5), g3(6);
    MambaLM m1(small_config(true), {}, g1), m2(small_config(true), {}, g2), m3(small_config(true), {}, g3);
    auto flat = [](const MambaLM& m) {
        std::vector<float> all;
        for (const Tensor& p : m.parameters()) {
            auto v = p.to_vector<float>();
            all.insert(all.end(), v.begin(), v.end());
        }
        return all;
    };
    CHECK(flat(m1) == flat(m2));
    CHECK(flat(m1) != flat(m3));
}

TEST_CASE("nn: bad inputs to the model name the shapes", "[nn][errors]") {
    Generator g(1);
    MambaLM model(small_config(false), {}, g);
    REQUIRE_ERROR_WITH(model.forward(random_ids(1, 4, 13, 1).reshape({4})), "MambaLM: ids is (4) i32 cpu", "(B, L)");
    InferenceState st = model.make_state(2);
    REQUIRE_ERROR_WITH(model.step(random_ids(3, 1, 13, 1).reshape({3}), st), "MambaLM::step", "(3) i32 cpu", "B = 2");
    REQUIRE_ERROR_WITH(model.backbone.layers[0]->mixer.forward(Tensor::zeros({1, 3, 8})), "MambaMixer",
                       "(1,3,8) f32 cpu", "d_model = 16");
}
