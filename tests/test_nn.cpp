// tests/test_nn.cpp: the model layer (nn/): parameter counts and names against mamba_ssm's,
// the recurrent step against the parallel forward, a gradcheck of a whole tiny LM, the state
// dict (round trip and every load error), Module's bookkeeping (to, zero_grad, train/eval,
// buffers, tied weights), the init schemes' statistics, and the config's JSON and its errors.
#include <cmath>
#include <set>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/mamba.h"
#include "nn/module.h"
#include "ops/dispatch.h"
#include "tests/helpers.h"

using namespace mg;
using namespace mg::nn;
using mg::test::devices;

namespace {

// A small config: d_model 16 (D 32, R 1), 2 layers, vocab 13 (padded to 16), d_state 4.
MambaConfig small_config(bool global_selection, int64_t k_long = 5, LongConvMode mode = LongConvMode::direct) {
    MambaConfig c;
    c.d_model = 16;
    c.n_layer = 2;
    c.vocab_size = 13;
    c.d_state = 4;
    c.global_selection.enabled = global_selection;
    c.global_selection.k_long = k_long;
    c.global_selection.mode = mode;
    return c;
}

Tensor random_ids(int64_t B, int64_t L, int64_t V, uint64_t seed) {
    Generator g(seed);
    std::vector<double> u = Tensor::uniform({B * L}, 0.0, double(V), {DType::f64}, g).to_vector<double>();
    std::vector<int32_t> ids(u.size());
    for (size_t i = 0; i < u.size(); ++i) ids[i] = std::min<int32_t>(int32_t(u[i]), int32_t(V - 1));
    return Tensor::from_vector(ids, {B, L});
}

std::vector<std::string> names_of(const NamedTensors& nt) {
    std::vector<std::string> out;
    for (const auto& [n, t] : nt) out.push_back(n);
    return out;
}

// A toy module with a buffer and a child, for Module's bookkeeping.
struct Toy : Module {
    Linear lin;
    Tensor scale, steps;
    Toy(Generator& g) : lin(3, 2, true, {}, g) {
        scale = Tensor::full({2}, 0.5);
        steps = Tensor::zeros({1}, {DType::i32});
        register_parameter("scale", scale);
        register_buffer("steps", steps);
        register_module("lin", lin);
    }
};

// Two layers sharing one weight (a tie made after registration, as a model would).
struct Tied : Module {
    Linear a, b;
    Tied(Generator& g) : a(4, 4, false, {}, g), b(4, 4, false, {}, g) {
        b.weight = a.weight;
        register_module("a", a);
        register_module("b", b);
    }
};

} // namespace

// ---- parameter counts and names -------------------------------------------------------------------

TEST_CASE("nn: parameter counts of mamba-130m and tiny, and of built models", "[nn]") {
    // paper-code.md §1.3: HF mamba-130m-hf (vocab 50280, a multiple of 8, so no padding)
    MambaConfig m130 = MambaConfig::preset("130m");
    REQUIRE(m130.padded_vocab() == 50280);
    REQUIRE(count_parameters(m130) == 129'135'360);
    MambaConfig gs = m130;
    gs.global_selection.enabled = true; // k_long 128, all 24 layers: the paper's "+4M"
    REQUIRE(count_parameters(gs) - count_parameters(m130) == 4'755'456);
    // tiny: d_model 256, 8 layers, vocab 20480, dt_rank 32 (≈ 8.9M); +0.53M with k_long 128
    MambaConfig tiny = MambaConfig::preset("tiny");
    REQUIRE(count_parameters(tiny) == 8'878'336);
    tiny.global_selection.enabled = true;
    REQUIRE(count_parameters(tiny) - count_parameters(MambaConfig::preset("tiny")) == 528'384);

    // flashlongconv, by hand: per layer D K + D + 2 D^2 + 2 D (kernel, D, output_linear)
    MambaConfig f130 = MambaConfig::preset("130m"); // the authors' 1.4B setting on 130m: K 512 at 7, 15, 23
    f130.global_selection = {true, GlobalSelectionKind::flashlongconv, 512, {7, 15, 23}};
    // 1536*512 + 1536 + 2*1536^2 + 2*1536 = 786,432 + 1,536 + 4,718,592 + 3,072 = 5,509,632
    REQUIRE(count_parameters(f130) - count_parameters(m130) == 3 * 5'509'632);
    MambaConfig ftiny = MambaConfig::preset("tiny"); // D 512, K 128, all 8 layers
    ftiny.global_selection = {true, GlobalSelectionKind::flashlongconv, 128, {}};
    // 512*128 + 512 + 2*512^2 + 2*512 = 65,536 + 512 + 524,288 + 1,024 = 591,360
    REQUIRE(count_parameters(ftiny) - count_parameters(MambaConfig::preset("tiny")) == 8 * 591'360);

    // The closed form equals what construction allocates, over configs that exercise every term.
    std::vector<MambaConfig> cfgs;
    cfgs.push_back(small_config(false));
    cfgs.push_back(small_config(true));
    MambaConfig c = small_config(true, 7);
    c.global_selection.layers = {1};
    c.dt_rank = 3;
    c.d_conv = 2;
    c.expand = 3;
    c.vocab_size = 17; // padded to 24
    c.pad_vocab_size_multiple = 8;
    cfgs.push_back(c);
    MambaConfig z = MambaConfig::preset("zoology", 64);
    z.vocab_size = 100;
    cfgs.push_back(z);
    cfgs.push_back(small_config(true, 6));
    cfgs.back().global_selection.kind = GlobalSelectionKind::flashlongconv;
    cfgs.back().global_selection.layers = {0};
    for (const MambaConfig& cfg : cfgs) {
        Generator g(1);
        MambaLM model(cfg, {}, g);
        INFO(cfg.to_json());
        CHECK(model.num_parameters() == count_parameters(cfg));
        std::vector<ParameterSpec> built;
        for (const auto& [name, t] : model.named_parameters()) built.push_back({name, t.shape()});
        CHECK(parameter_specs(cfg) == built); // names, order and shapes, without building
        int64_t sum = 0;
        for (const Tensor& p : model.parameters()) sum += p.numel();
        CHECK(sum == model.num_parameters());
    }
    REQUIRE(MambaLM(cfgs[2]).backbone.embedding.weight.size(0) == 24);
}

TEST_CASE("nn: parameter names and shapes are mamba_ssm's", "[nn]") {
    MambaConfig cfg = small_config(true, 5);
    cfg.global_selection.layers = {1}; // global selection in the second layer only
    Generator g(3);
    MambaLM model(cfg, {}, g);
    std::vector<std::string> want = {"backbone.embedding.weight"};
    for (int i = 0; i < 2; ++i) {
        std::string p = fmt::format("backbone.layers.{}.", i);
        for (const char* n : {"mixer.A_log", "mixer.D", "mixer.in_proj.weight", "mixer.conv1d.weight", "mixer.conv1d.bias"})
            want.push_back(p + n);
        if (i == 1) {
            want.push_back(p + "mixer.long_conv.weight");
            want.push_back(p + "mixer.long_conv.bias");
        }
        for (const char* n : {"mixer.x_proj.weight", "mixer.dt_proj.weight", "mixer.dt_proj.bias",
                              "mixer.out_proj.weight", "norm.weight"})
            want.push_back(p + n);
    }
    want.push_back("backbone.norm_f.weight");
    NamedTensors np = model.named_parameters();
    REQUIRE(names_of(np) == want);
    // shapes (d = 16, D = 32, R = 1, N = 4, K = 4, K_long = 5, V = 16)
    std::map<std::string, Shape> shapes;
    for (auto& [n, t] : np) shapes[n] = t.shape();
    CHECK(shapes["backbone.embedding.weight"] == Shape{16, 16});
    CHECK(shapes["backbone.layers.0.mixer.in_proj.weight"] == Shape{64, 16});
    CHECK(shapes["backbone.layers.0.mixer.conv1d.weight"] == Shape{32, 1, 4});
    CHECK(shapes["backbone.layers.0.mixer.conv1d.bias"] == Shape{32});
    CHECK(shapes["backbone.layers.1.mixer.long_conv.weight"] == Shape{32, 1, 5});
    CHECK(shapes["backbone.layers.1.mixer.long_conv.bias"] == Shape{32});
    CHECK(shapes["backbone.layers.0.mixer.x_proj.weight"] == Shape{1 + 2 * 4, 32});
    CHECK(shapes["backbone.layers.0.mixer.dt_proj.weight"] == Shape{32, 1});
    CHECK(shapes["backbone.layers.0.mixer.dt_proj.bias"] == Shape{32});
    CHECK(shapes["backbone.layers.0.mixer.A_log"] == Shape{32, 4});
    CHECK(shapes["backbone.layers.0.mixer.D"] == Shape{32});
    CHECK(shapes["backbone.layers.0.mixer.out_proj.weight"] == Shape{16, 32});
    CHECK(shapes["backbone.layers.0.norm.weight"] == Shape{16});
    CHECK(shapes["backbone.norm_f.weight"] == Shape{16});
    for (auto& [n, t] : np) {
        CHECK(t.requires_grad());
        CHECK(t.is_leaf());
        CHECK(t.dtype() == DType::f32);
    }
    // lm_head is the embedding itself, not a parameter of its own
    CHECK(model.lm_head_weight().same(model.backbone.embedding.weight));
    CHECK(model.state_dict().size() == want.size());

    // flashlongconv: the same place, the authors' FlashLongconv names in their order
    cfg.global_selection.kind = GlobalSelectionKind::flashlongconv;
    MambaLM flash(cfg, {}, g);
    std::map<std::string, Shape> fshapes;
    std::vector<std::string> fnames;
    for (auto& [n, t] : flash.named_parameters())
        if (n.find("long_conv") != std::string::npos) fnames.push_back(n), fshapes[n] = t.shape();
    const std::string p = "backbone.layers.1.mixer.long_conv.";
    REQUIRE(fnames == std::vector<std::string>{p + "D", p + "kernel", p + "output_linear.weight", p + "output_linear.bias"});
    CHECK(fshapes[p + "D"] == Shape{1, 32});
    CHECK(fshapes[p + "kernel"] == Shape{1, 32, 5});
    CHECK(fshapes[p + "output_linear.weight"] == Shape{64, 32});
    CHECK(fshapes[p + "output_linear.bias"] == Shape{64});
    CHECK(flash.backbone.layers[1]->mixer.global_selection());
    CHECK_FALSE(flash.backbone.layers[0]->mixer.global_selection());
}

// ---- forward: recurrent = parallel, gradients ---------------------------------------------------

TEST_CASE("nn: stepping token by token reproduces the parallel forward (f64)", "[nn]") {
    struct Case { bool gs; LongConvMode mode; int64_t k_long; std::vector<int64_t> layers; };
    // k_long 5 < L = 9 so the long conv's state shifts out old tokens; 12 > L covers the other side
    const Case cases[] = {{false, LongConvMode::direct, 5, {}},
                          {true, LongConvMode::direct, 5, {}},
                          {true, LongConvMode::fft, 5, {0}},
                          {true, LongConvMode::automatic, 12, {1}}};
    for (const Case& cs : cases) {
        MambaConfig cfg = small_config(cs.gs, cs.k_long, cs.mode);
        cfg.global_selection.layers = cs.layers;
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
                                                long_conv_mode_name(cs.mode), cs.k_long, dev.str()));
        }
    }
}

TEST_CASE("nn: gradcheck of a tiny MambaLM loss with respect to every parameter", "[nn][gradcheck]") {
    for (bool gs : {false, true}) {
        MambaConfig cfg;
        cfg.d_model = 8;
        cfg.n_layer = 1;
        cfg.vocab_size = 11;
        cfg.d_state = 4;
        cfg.global_selection.enabled = gs;
        cfg.global_selection.k_long = 3;
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
        INFO("global selection " << gs << ": " << r.message);
        CHECK(r.ok);
        CHECK(r.num_checked == model.num_parameters());
    }
}

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
            for (LongConvMode mode : {LongConvMode::direct, LongConvMode::fft}) {
                Generator g(31 + uint64_t(K));
                FlashLongConv m(D, K, {DType::f64, dev}, g, mode);
                kernel_off_the_kinks(m, g); // the init (N(0, 0.002^2)) would squash nearly all to 0
                m.eval();
                Tensor u = Tensor::randn({B, L, D}, {DType::f64, dev}, g);
                Tensor y = m.forward(u);
                REQUIRE(y.shape() == Shape{B, L, D});
                mg::test::require_close(y, Tensor::from_vector(flash_ref(m, u), {B, L, D}), 1e-12, 1e-12,
                                        fmt::format("K {} mode {} on {}", K, long_conv_mode_name(mode), dev.str()));
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
    struct Case { LongConvMode mode; int64_t k_long; std::vector<int64_t> layers; };
    // k_long 4 < L = 9: the ring buffer shifts tokens out; 9 = L; 12 > L: taps past L unused
    const Case cases[] = {{LongConvMode::direct, 4, {}}, {LongConvMode::fft, 9, {1}}, {LongConvMode::automatic, 12, {}}};
    for (const Case& cs : cases) {
        MambaConfig cfg = small_config(true, cs.k_long, cs.mode);
        cfg.global_selection.kind = GlobalSelectionKind::flashlongconv;
        cfg.global_selection.layers = cs.layers;
        for (Device dev : devices()) {
            Generator g(12);
            MambaLM model(cfg, {DType::f64, dev}, g);
            for (const auto& layer : model.backbone.layers)
                if (layer->mixer.flash_long_conv) kernel_off_the_kinks(*layer->mixer.flash_long_conv, g);
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
                                                long_conv_mode_name(cs.mode), cs.k_long, dev.str()));
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
        cfg.global_selection = {true, GlobalSelectionKind::flashlongconv, K, {}, LongConvMode::direct};
        if (K == 7) cfg.global_selection.mode = LongConvMode::fft;
        Generator g(21);
        MambaMixer mixer(cfg, 0, {DType::f64}, g);
        kernel_off_the_kinks(*mixer.flash_long_conv, g);
        Generator drop(4);
        mixer.flash_long_conv->gen = &drop;
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

// ---- state dict and Module bookkeeping ----------------------------------------------------------

TEST_CASE("nn: state dict round trip makes two models compute the same function", "[nn]") {
    MambaConfig cfg = small_config(true);
    Generator g1(1), g2(2);
    MambaLM a(cfg, {}, g1), b(cfg, {}, g2);
    Tensor ids = random_ids(2, 6, cfg.vocab_size, 3);
    CHECK(a.forward(ids).to_vector<float>() != b.forward(ids).to_vector<float>());
    b.load_state_dict(a.state_dict());
    CHECK(a.forward(ids).to_vector<float>() == b.forward(ids).to_vector<float>());
    // the loaded values are copies: b's tensors are still its own
    CHECK(b.backbone.embedding.weight.impl_ptr()->storage != a.backbone.embedding.weight.impl_ptr()->storage);
    CHECK(b.backbone.embedding.weight.requires_grad());
    // loading a model's own dict is a no-op
    std::vector<float> before = a.forward(ids).to_vector<float>();
    a.load_state_dict(a.state_dict());
    CHECK(a.forward(ids).to_vector<float>() == before);
    // mamba_ssm's torch dicts carry the tied head as lm_head.weight: accepted when it is the embedding
    StateDict sd = a.state_dict();
    sd["lm_head.weight"] = sd["backbone.embedding.weight"].clone();
    b.load_state_dict(sd);
    sd["lm_head.weight"] = Tensor::zeros(sd["backbone.embedding.weight"].shape());
    REQUIRE_ERROR_WITH(b.load_state_dict(sd), "lm_head.weight", "differs from backbone.embedding.weight", "ties");
}

TEST_CASE("nn: load_state_dict names missing, unexpected and mismatched keys and changes nothing", "[nn][errors]") {
    MambaConfig cfg = small_config(false);
    Generator g(1);
    MambaLM model(cfg, {}, g);
    Tensor ids = random_ids(1, 4, cfg.vocab_size, 3);
    std::vector<float> before = model.forward(ids).to_vector<float>();
    StateDict good = model.state_dict();
    for (auto& [n, t] : good) t = t.clone();
    {
        StateDict sd = good;
        sd.erase("backbone.layers.1.mixer.A_log");
        sd["backbone.layers.0.mixer.bogus"] = Tensor::zeros({3});
        REQUIRE_ERROR_WITH(model.load_state_dict(sd), "load_state_dict", "missing keys: backbone.layers.1.mixer.A_log",
                           "unexpected keys: backbone.layers.0.mixer.bogus");
    }
    {
        StateDict sd = good;
        sd["backbone.layers.0.mixer.A_log"] = Tensor::zeros({32, 5});
        REQUIRE_ERROR_WITH(model.load_state_dict(sd), "backbone.layers.0.mixer.A_log has shape (32,5)",
                           "expected (32,4)");
    }
    {
        StateDict sd = good;
        sd["backbone.norm_f.weight"] = Tensor::ones({16}, {DType::f64});
        REQUIRE_ERROR_WITH(model.load_state_dict(sd), "backbone.norm_f.weight has dtype f64", "expected f32");
    }
    {   // a global-selection checkpoint into a model without it
        Generator g2(2);
        MambaLM gs(small_config(true), {}, g2);
        REQUIRE_ERROR_WITH(model.load_state_dict(gs.state_dict()), "unexpected keys",
                           "backbone.layers.0.mixer.long_conv.weight", "backbone.layers.1.mixer.long_conv.bias");
    }
    // every failed load above left the model as it was
    CHECK(model.forward(ids).to_vector<float>() == before);
}

TEST_CASE("nn: Module moves and converts its tensors, zeroes grads, sets train/eval, keeps buffers", "[nn]") {
    Generator g(4);
    Toy toy(g);
    CHECK(names_of(toy.named_parameters()) == std::vector<std::string>{"scale", "lin.weight", "lin.bias"});
    CHECK(names_of(toy.named_buffers()) == std::vector<std::string>{"steps"});
    CHECK(toy.num_parameters() == 2 + 6 + 2);
    CHECK(toy.state_dict().count("steps") == 1);
    // a gradient, then zero_grad
    Tensor x = Tensor::randn({4, 3}, {}, g);
    sum(toy.lin.forward(x) * toy.scale).backward();
    for (const Tensor& p : toy.parameters()) CHECK(p.grad().defined());
    toy.zero_grad();
    for (const Tensor& p : toy.parameters()) CHECK_FALSE(p.grad().defined());
    // to() where the tensors already are changes nothing (an optimizer's handles stay valid)
    Tensor w_before = toy.lin.weight;
    toy.to(Device::cpu()).to(DType::f32);
    CHECK(toy.lin.weight.same(w_before));
    // to(f64): the members themselves are replaced; parameters stay leaves requiring grad; the
    // i32 buffer keeps its dtype
    std::vector<float> w = toy.lin.weight.to_vector<float>();
    toy.to(DType::f64);
    CHECK(toy.lin.weight.dtype() == DType::f64);
    CHECK(toy.scale.dtype() == DType::f64);
    CHECK(toy.steps.dtype() == DType::i32);
    for (const Tensor& p : toy.parameters()) {
        CHECK(p.is_leaf());
        CHECK(p.requires_grad());
    }
    std::vector<double> w64 = toy.lin.weight.to_vector<double>();
    for (size_t i = 0; i < w.size(); ++i) CHECK(w64[i] == double(w[i]));
    REQUIRE_ERROR_WITH(toy.to(DType::i32), "Module::to", "i32");
    // train / eval reach the children
    CHECK(toy.is_training());
    toy.eval();
    CHECK_FALSE(toy.is_training());
    CHECK_FALSE(toy.lin.is_training());
    toy.train();
    CHECK(toy.lin.is_training());
    // a tied weight is listed and counted once, and stays tied through to()
    Tied tied(g);
    CHECK(names_of(tied.named_parameters()) == std::vector<std::string>{"a.weight"});
    CHECK(tied.num_parameters() == 16);
    CHECK(tied.state_dict().size() == 2);
    tied.to(DType::f64);
    CHECK(tied.a.weight.same(tied.b.weight));
    CHECK(tied.a.weight.dtype() == DType::f64);
    // devices: every tensor moves, the model still computes the same function
    for (Device dev : devices()) {
        Generator g1(9);
        MambaLM m(small_config(true), {DType::f64}, g1);
        Tensor ids = random_ids(2, 5, 13, 1);
        Tensor ref = m.forward(ids);
        m.to(dev);
        for (const Tensor& p : m.parameters()) CHECK(p.device() == dev);
        mg::test::require_close(m.forward(ids.to(dev)), ref, 1e-12, 1e-12, "forward after to(" + dev.str() + ")");
        m.to(Device::cpu());
    }
}

TEST_CASE("nn: an f32 model on cuda matches cpu, parallel and recurrent", "[nn][parity][cuda]") {
    MG_REQUIRE_CUDA();
    MambaConfig cfg = small_config(true, 5, LongConvMode::fft);
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

TEST_CASE("nn: an f32 flashlongconv model on cuda matches cpu, training with dropout and recurrent", "[nn][parity][cuda][flash]") {
    MG_REQUIRE_CUDA();
    MambaConfig cfg = small_config(true, 6, LongConvMode::fft);
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
        within(mx.long_conv->weight, 1 / 4.0);
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

// ---- config ---------------------------------------------------------------------------------------

TEST_CASE("nn: config JSON round trip, presets and overrides", "[nn]") {
    MambaConfig c = MambaConfig::preset("tiny");
    c.global_selection.enabled = true;
    c.global_selection.k_long = 512;
    c.global_selection.layers = {0, 5};
    c.global_selection.mode = LongConvMode::fft;
    c.init = InitScheme::paper_code;
    MambaConfig r = MambaConfig::from_json(c.to_json());
    CHECK(r.to_json() == c.to_json());
    CHECK(r.dt_rank == 32);
    CHECK(r.global_selection.layers == std::vector<int64_t>{0, 5});
    CHECK(r.init == InitScheme::paper_code);
    // defaults and "auto"
    MambaConfig d = MambaConfig::from_json("{}");
    CHECK(d.to_json() == MambaConfig().to_json());
    CHECK(d.resolved_dt_rank() == 48);
    MambaConfig z = MambaConfig::from_json(R"({"preset": "zoology", "d_model": 96, "dt_rank": "auto",
        "global_selection": {"enabled": true, "layers": "all", "mode": "direct"}})");
    CHECK(z.n_layer == 2);
    CHECK(z.vocab_size == 8192);
    CHECK(z.d_model == 96);
    CHECK(z.resolved_dt_rank() == 6);
    CHECK(z.global_selection.applies_to(0));
    CHECK(z.global_selection.applies_to(1));
    CHECK(MambaConfig::preset("zoology", 256).d_model == 256);
    CHECK(MambaConfig::preset("130m").d_inner() == 1536);
}

TEST_CASE("nn: config errors name the key and what is allowed", "[nn][errors]") {
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"d_modle": 64})"), "unknown key 'd_modle'", "allowed keys:",
                       "d_model");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"global_selection": {"k": 3}})"), "unknown key 'k'",
                       "global_selection", "k_long");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"init": "xavier"})"), "init is 'xavier'", "mamba, paper-code");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"global_selection": {"mode": "FFT"}})"), "global_selection.mode",
                       "'FFT'", "auto, direct, fft");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"global_selection": {"kind": "hyena"}})"), "longconv, flashlongconv");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"d_model": "big"})"), "d_model is \"big\"", "integer");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"d_model": 0})"), "d_model = 0", "positive");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"dt_rank": "max"})"), "dt_rank", "\"auto\"");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"preset": "1.4b"})"), "preset is '1.4b'", "zoology, tiny, 130m");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"n_layer": 2, "global_selection": {"layers": [0, 2]}})"),
                       "global_selection.layers holds 2", "[0, 2)");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"global_selection": {"layers": []}})"), "global_selection.layers",
                       "\"all\"");
    REQUIRE_ERROR_WITH(MambaConfig::from_json(R"({"global_selection": {"enabled": 1}})"), "enabled", "true or false");
    REQUIRE_ERROR_WITH(MambaConfig::from_json("{\"d_model\": 64,"), "model config: not valid JSON");
    REQUIRE_ERROR_WITH(MambaConfig::from_json("[1, 2]"), "expected a JSON object");
    REQUIRE_ERROR_WITH(MambaConfig::preset("tiny", 128), "only the zoology preset takes a d_model");
    REQUIRE_ERROR_WITH(FlashLongConv(4, 3, {}, default_generator(), LongConvMode::direct, 1.0), "FlashLongConv",
                       "dropout = 1", "[0, 1)");
    REQUIRE_ERROR_WITH(FlashLongConv(4, 0, {}, default_generator()), "FlashLongConv", "k_long = 0");
    Generator g(2);
    FlashLongConv f(4, 3, {}, g);
    REQUIRE_ERROR_WITH(f.forward(Tensor::zeros({1, 5, 3})), "FlashLongConv", "(1,5,3) f32 cpu", "D = 4");
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
