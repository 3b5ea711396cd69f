// tests/test_layers.cpp: nn/layers.h's FlashLongConv (the authors' heavier global-selection
// module): the authors' formula, dropout, stepping, gradcheck, CUDA against CPU.
#include <cmath>
#include <set>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/mamba.h"
#include "nn/module.h"
#include "ops/copy.h"
#include "tests/helpers.h"
#include "tests/nn_helpers.h"

using namespace mg;
using namespace mg::nn;
using namespace mg::test;

// ---- flashlongconv ---------------------------------------------------------------------------------

namespace {

// The authors' FlashLongconv as loops in double, from its parameters (kernel in their lag order):
// squash, causal conv, + u D, exact GELU, times mask[b, d] (already divided by 1 - p; empty: no
// dropout), output_linear, GLU. u (B, L, D) -> (B, L, D).
std::vector<double> flash_ref(const FlashLongConv& m, const Tensor& u, const std::vector<double>& mask = {}) {
    auto f64 = [](const Tensor& t) { return t.to(DType::f64).to_vector<double>(); };
    const std::vector<double> k = f64(m.kernel), Dv = f64(m.D), W = f64(m.output_linear.weight),
                              bias = f64(m.output_linear.bias), x = f64(u);
    const int64_t B = u.size(0), L = u.size(1), D = m.channels, K = m.kernel_size;
    auto squash = [](double v) { return v > 0 ? std::max(v - 0.003, 0.0) : std::min(v + 0.003, 0.0); };
    std::vector<double> h(size_t(B * L * D)), out(size_t(B * L * D));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t)
            for (int64_t d = 0; d < D; ++d) {
                double pre = Dv[size_t(d)] * x[size_t((b * L + t) * D + d)];
                for (int64_t j = 0; j < K && j <= t; ++j)
                    pre += squash(k[size_t(d * K + j)]) * x[size_t((b * L + t - j) * D + d)];
                double g = 0.5 * pre * (1 + std::erf(pre / std::sqrt(2.0)));
                h[size_t((b * L + t) * D + d)] = mask.empty() ? g : g * mask[size_t(b * D + d)];
            }
    for (int64_t bt = 0; bt < B * L; ++bt)
        for (int64_t o = 0; o < D; ++o) {
            double a = bias[size_t(o)], c = bias[size_t(o + D)];
            for (int64_t d = 0; d < D; ++d) {
                a += W[size_t(o * D + d)] * h[size_t(bt * D + d)];
                c += W[size_t((o + D) * D + d)] * h[size_t(bt * D + d)];
            }
            out[size_t(bt * D + o)] = a / (1 + std::exp(-c));
        }
    return out;
}

// Kernel values kept 1e-4 or more away from the squash's kinks at +-0.003 (finite differences
// must not straddle them), half of them inside the dead zone.
void kernel_off_the_kinks(FlashLongConv& m, Generator& g) {
    std::vector<double> v = Tensor::uniform({m.kernel.numel()}, -1.0, 1.0, {DType::f64}, g).to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) {
        double mag = i % 2 ? 0.0029 * std::abs(v[i]) : 0.0031 + 0.05 * std::abs(v[i]);
        v[i] = v[i] < 0 ? -mag : mag;
    }
    copy_into(m.kernel, Tensor::from_vector(v, m.kernel.shape()).to(m.kernel.dtype()).to(m.kernel.device()));
}

} // namespace

TEST_CASE("nn: FlashLongConv equals the authors' formula for kernels shorter and longer than L", "[nn][flash]") {
    const int64_t B = 2, L = 9, D = 6;
    for (Device dev : devices())
        for (int64_t K : {1, 4, 9, 13})
            for (CausalConvMode mode : {CausalConvMode::direct, CausalConvMode::fft}) {
                Generator g(31 + uint64_t(K));
                FlashLongConv m(D, K, {DType::f64, dev}, g, mode);
                kernel_off_the_kinks(m, g); // the init (N(0, 0.002^2)) would squash nearly all to 0
                m.eval();
                Tensor u = Tensor::randn({B, L, D}, {DType::f64, dev}, g);
                Tensor y = m.forward(u);
                REQUIRE(y.shape() == Shape{B, L, D});
                mg::test::require_close(y, Tensor::from_vector(flash_ref(m, u), {B, L, D}), 1e-12, 1e-12,
                                        fmt::format("K {} mode {} on {}", K, causal_conv_mode_name(mode), dev.str()));
            }
    // the init: D ~ N(0, 1), kernel ~ N(0, 0.002^2) (most taps inside the dead zone), output_linear
    // U(+-1/sqrt(D))
    Generator g(5);
    FlashLongConv m(128, 64, {}, g);
    std::vector<float> k = m.kernel.to_vector<float>(), dv = m.D.to_vector<float>();
    double ss = 0, sd = 0;
    for (float v : k) ss += double(v) * v;
    for (float v : dv) sd += double(v) * v;
    CHECK(std::sqrt(ss / double(k.size())) == Approx(0.002).epsilon(0.03)); // 8192 draws: rel. s.e. 0.8%
    CHECK(std::sqrt(sd / double(dv.size())) == Approx(1.0).epsilon(0.2));   // 128 draws: rel. s.e. 6%
    std::vector<float> w = m.output_linear.weight.to_vector<float>();
    CHECK(*std::max_element(w.begin(), w.end()) <= float(1 / std::sqrt(128.0)));
    CHECK(*std::max_element(w.begin(), w.end()) > float(0.9 / std::sqrt(128.0)));
}

TEST_CASE("nn: FlashLongConv dropout: training only, one mask per (batch, channel), from its generator", "[nn][flash]") {
    const int64_t B = 3, L = 7, D = 8;
    Generator g(8);
    FlashLongConv m(D, 5, {DType::f64}, g);
    kernel_off_the_kinks(m, g);
    Tensor u = Tensor::randn({B, L, D}, {DType::f64}, g);
    Generator drop(77);
    m.gen = &drop;
    // training (the default): the mask the op draws from drop's state, shared by every t
    Tensor y = m.forward(u);
    CHECK(drop.offset() == uint64_t(B * D)); // one draw per (b, d), not per (b, t, d)
    Generator replay(77);
    std::vector<double> mask = dropout(Tensor::ones({B * D}, {DType::f64}), 0.2, replay).to_vector<double>();
    int64_t dropped = 0;
    for (double v : mask) dropped += v == 0.0;
    CHECK(dropped > 0); // 24 draws at p 0.2: all kept has probability 0.5%, and this seed drops some
    mg::test::require_close(y, Tensor::from_vector(flash_ref(m, u, mask), {B, L, D}), 1e-12, 1e-12, "train mode");
    // eval: no dropout, nothing drawn
    m.eval();
    mg::test::require_close(m.forward(u), Tensor::from_vector(flash_ref(m, u), {B, L, D}), 1e-12, 1e-12, "eval");
    CHECK(drop.offset() == uint64_t(B * D));
    // through the model: train()/eval() and set_dropout_generator reach every flash layer
    MambaConfig cfg = small_config(true, 4);
    cfg.global_selection.kind = GlobalSelectionKind::flashlongconv;
    Generator gm(3);
    MambaLM model(cfg, {DType::f64}, gm);
    Generator d1(1), d2(1);
    Tensor ids = random_ids(2, 6, cfg.vocab_size, 2);
    model.set_dropout_generator(&d1);
    Tensor a = model.forward(ids);
    CHECK(d1.offset() == 2 * 2 * 32); // 2 layers x B 2 x D 32
    model.set_dropout_generator(&d2);
    CHECK(model.forward(ids).to_vector<double>() == a.to_vector<double>()); // same generator state, same masks
    model.eval();
    Tensor e1 = model.forward(ids), e2 = model.forward(ids);
    CHECK(e1.to_vector<double>() == e2.to_vector<double>());
    CHECK(e1.to_vector<double>() != a.to_vector<double>());
    CHECK(d2.offset() == 2 * 2 * 32);
}

TEST_CASE("nn: flashlongconv: stepping reproduces the parallel forward in eval mode (f64)", "[nn][flash]") {
    struct Case { CausalConvMode mode; int64_t k_long; std::vector<int64_t> layers; };
    // k_long 4 < L = 9: the ring buffer shifts tokens out; 9 = L; 12 > L: taps past L unused
    const Case cases[] = {{CausalConvMode::direct, 4, {}}, {CausalConvMode::fft, 9, {1}}, {CausalConvMode::automatic, 12, {}}};
    for (const Case& cs : cases) {
        MambaConfig cfg = small_config(true, cs.k_long, cs.mode);
        cfg.global_selection.kind = GlobalSelectionKind::flashlongconv;
        cfg.global_selection.layers = cs.layers;
        for (Device dev : devices()) {
            Generator g(12);
            MambaLM model(cfg, {DType::f64, dev}, g);
            for (const auto& layer : model.backbone.layers)
                if (layer->mixer.long_conv) kernel_off_the_kinks(layer->mixer.long_conv_as<FlashLongConv>(), g);
            model.eval();
            const int64_t B = 2, L = 9;
            Tensor ids = random_ids(B, L, cfg.vocab_size, 6).to(dev);
            Tensor par = model.forward(ids);
            InferenceState st = model.make_state(B);
            REQUIRE(st.layers[1].long_conv_state.shape() == Shape{B, 32, cs.k_long - 1});
            std::vector<Tensor> steps;
            for (int64_t t = 0; t < L; ++t)
                steps.push_back(model.step(ids.narrow(1, t, 1).reshape({B}).contiguous(), st).unsqueeze(1));
            mg::test::require_close(cat(steps, 1), par, 1e-9, 1e-9,
                                    fmt::format("flash step vs parallel (mode={}, k_long={}, {})",
                                                causal_conv_mode_name(cs.mode), cs.k_long, dev.str()));
        }
    }
}

TEST_CASE("nn: gradcheck of a MambaMixer with flashlongconv, dropout on, every parameter and the input", "[nn][flash][gradcheck]") {
    for (int64_t K : {3, 7}) { // K < L and K > L (L = 5)
        MambaConfig cfg;
        cfg.d_model = 8; // D 16
        cfg.n_layer = 1;
        cfg.vocab_size = 11;
        cfg.d_state = 4;
        cfg.global_selection = {true, GlobalSelectionKind::flashlongconv, K, {}, CausalConvMode::direct};
        if (K == 7) cfg.global_selection.mode = CausalConvMode::fft;
        Generator g(21);
        MambaMixer mixer(cfg, 0, {DType::f64}, g);
        kernel_off_the_kinks(mixer.long_conv_as<FlashLongConv>(), g);
        Generator drop(4);
        mixer.long_conv_as<FlashLongConv>().gen = &drop;
        Tensor u = Tensor::randn({2, 5, 8}, {DType::f64}, g);
        u.set_requires_grad(true);
        std::vector<Tensor> inputs = {u};
        GradcheckOptions opts;
        opts.names.push_back("u");
        for (auto& [n, t] : mixer.named_parameters()) {
            inputs.push_back(t);
            opts.names.push_back(n);
        }
        // every evaluation draws the same dropout mask (the generator is rewound); the mixer reads
        // its parameters itself, gradcheck perturbs them in place
        GradcheckResult r = gradcheck([&](const std::vector<Tensor>& x) {
            drop.set_state(4, 0);
            return mixer.forward(x[0]);
        }, inputs, opts);
        INFO("K " << K << ": " << r.message);
        CHECK(r.ok);
        CHECK(r.num_checked == u.numel() + mixer.num_parameters());
    }
}

TEST_CASE("nn: an f32 flashlongconv model on cuda matches cpu, training with dropout and recurrent", "[nn][parity][cuda][flash]") {
    MG_REQUIRE_CUDA();
    MambaConfig cfg = small_config(true, 6, CausalConvMode::fft);
    cfg.global_selection.kind = GlobalSelectionKind::flashlongconv;
    Generator g(13);
    MambaLM model(cfg, {}, g);
    Generator drop(9);
    model.set_dropout_generator(&drop); // the masks are the same on both devices (tensor/random.h)
    Tensor ids = random_ids(2, 7, cfg.vocab_size, 4), targets = random_ids(2, 7, cfg.vocab_size, 5);
    Tensor cpu_logits = model.forward(ids);
    cross_entropy(cpu_logits, targets).backward();
    std::map<std::string, Tensor> cpu_grads;
    for (auto& [n, p] : model.named_parameters()) cpu_grads[n] = p.grad();
    model.zero_grad();
    model.to(Device::cuda());
    drop.set_state(9, 0);
    Tensor cuda_logits = model.forward(ids.to(Device::cuda()));
    mg::test::require_close(cuda_logits, cpu_logits, 1e-4, 1e-4, "flash MambaLM logits cuda vs cpu (training)");
    cross_entropy(cuda_logits, targets.to(Device::cuda())).backward();
    for (auto& [n, p] : model.named_parameters()) mg::test::require_close(p.grad(), cpu_grads[n], 1e-3, 1e-4, n + " grad");
    model.eval();
    Tensor eval_logits = model.forward(ids.to(Device::cuda()));
    InferenceState st = model.make_state(2);
    for (int64_t t = 0; t < 7; ++t) {
        Tensor logits = model.step(ids.narrow(1, t, 1).reshape({2}).contiguous().to(Device::cuda()), st);
        mg::test::require_close(logits, eval_logits.narrow(1, t, 1).reshape({2, cfg.padded_vocab()}), 1e-4, 1e-4,
                                fmt::format("flash step {} on cuda", t));
    }
}
