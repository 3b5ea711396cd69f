// tests/test_transformer.cpp: the GPT-NeoX (Pythia) model of nn/transformer.h: parameter names,
// shapes and counts (the Pythia presets' published totals), the forward against a composite
// written from plain ops (attention as matmul, mask, softmax, matmul; rotary by formula),
// gradcheck of the whole model, KV-cache stepping against the parallel forward, CUDA parity,
// config errors.
#include <cmath>

#include "nn/transformer.h"
#include "tests/helpers.h"
#include "tests/nn_helpers.h"

using namespace mg;
using namespace mg::nn;
using mg::test::devices;
using mg::test::random_ids;

namespace {

TransformerConfig small_transformer() {
    TransformerConfig c;
    c.d_model = 12;
    c.n_layer = 2;
    c.n_head = 3;       // Dh = 4
    c.rotary_pct = 0.5; // 2 of 4 dims rotate
    c.vocab_size = 13;  // padded to 16
    c.init_std = 0.3;   // larger than 0.02, so attention is far from uniform
    return c;
}

// One layer's attention written from plain ops, for the forward check: q, k, v per head from
// the fused projection's GPT-NeoX layout, rotary by its formula, softmax of masked scores.
Tensor attention_composite(const GPTNeoXAttention& a, const Tensor& x) {
    const int64_t B = x.size(0), L = x.size(1), H = a.n_head, Dh = a.head_dim, R = a.rotary_dims;
    Tensor qkv = linear(x, a.query_key_value.weight, a.query_key_value.bias).reshape({B, L, H, 3 * Dh});
    auto part = [&](int64_t i) { return qkv.narrow(3, i * Dh, Dh).permute({0, 2, 1, 3}).contiguous(); };
    // rotary: y_i = x_i cos - x_{i+h} sin, y_{i+h} = x_{i+h} cos + x_i sin, on the first R dims
    auto rotate = [&](const Tensor& t) {
        std::vector<double> cs(size_t(L * Dh), 1.0), sn(size_t(L * Dh), 0.0), sign(size_t(Dh), 0.0);
        for (int64_t l = 0; l < L; ++l)
            for (int64_t j = 0; j < R; ++j) {
                const double ang = double(l) * std::pow(a.rotary_base, -double(2 * (j % (R / 2))) / double(R));
                cs[size_t(l * Dh + j)] = std::cos(ang);
                sn[size_t(l * Dh + j)] = std::sin(ang);
            }
        Tensor c = Tensor::from_vector(cs, {L, Dh}).to(t.dtype()).to(t.device());
        Tensor s = Tensor::from_vector(sn, {L, Dh}).to(t.dtype()).to(t.device());
        const int64_t h = R / 2;
        std::vector<Tensor> parts;
        if (R > 0) parts = {-t.narrow(3, h, h), t.narrow(3, 0, h)};
        if (Dh > R) parts.push_back(Tensor::zeros({B, H, L, Dh - R}, t.options()));
        Tensor half = cat(parts, 3); // rotate_half on the rotary dims, zeros elsewhere
        return t * c + half * s;
    };
    Tensor q = rotate(part(0)), k = rotate(part(1)), v = part(2);
    std::vector<double> mask(size_t(L * L));
    for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < L; ++j) mask[size_t(i * L + j)] = j > i ? -INFINITY : 0.0;
    Tensor m = Tensor::from_vector(mask, {L, L}).to(x.dtype()).to(x.device());
    Tensor p = softmax(matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(double(Dh))) + m);
    Tensor o = matmul(p, v).permute({0, 2, 1, 3}).reshape({B, L, H * Dh});
    return linear(o, a.dense.weight, a.dense.bias);
}

} // namespace

TEST_CASE("transformer: Pythia presets have the published parameter counts and transformers' names", "[transformer]") {
    CHECK(count_parameters(TransformerConfig::preset("pythia-70m")) == 70426624);
    CHECK(count_parameters(TransformerConfig::preset("pythia-160m")) == 162322944);
    // a built model lists exactly the specs, in order, with transformers' names
    const TransformerConfig cfg = small_transformer();
    Generator g(1);
    TransformerLM model(cfg, {DType::f32}, g);
    NamedTensors np = model.named_parameters();
    std::vector<ParameterSpec> specs = parameter_specs(cfg);
    REQUIRE(np.size() == specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
        CHECK(np[i].first == specs[i].name);
        CHECK(np[i].second.shape() == specs[i].shape);
    }
    CHECK(np.front().first == "gpt_neox.embed_in.weight");
    CHECK(np[1].first == "gpt_neox.layers.0.input_layernorm.weight");
    CHECK(np[5].first == "gpt_neox.layers.0.attention.query_key_value.weight");
    CHECK(np.back().first == "embed_out.weight");
    CHECK(model.num_parameters() == count_parameters(cfg));
}

TEST_CASE("transformer: forward equals the block written from plain ops", "[transformer]") {
    for (Device dev : devices()) {
        const TransformerConfig cfg = small_transformer();
        Generator g(2);
        TransformerLM model(cfg, {DType::f64, dev}, g);
        Tensor ids = random_ids(2, 7, cfg.vocab_size, 3).to(dev);
        Tensor h = embedding(ids, model.gpt_neox.embed_in.weight);
        for (const auto& layer : model.gpt_neox.layers) {
            const auto& ln1 = layer->input_layernorm;
            const auto& ln2 = layer->post_attention_layernorm;
            Tensor a = attention_composite(layer->attention, layer_norm(h, ln1.weight, ln1.bias, ln1.eps));
            Tensor x2 = layer_norm(h, ln2.weight, ln2.bias, ln2.eps);
            Tensor mlp = linear(gelu(linear(x2, layer->mlp.dense_h_to_4h.weight, layer->mlp.dense_h_to_4h.bias)),
                                layer->mlp.dense_4h_to_h.weight, layer->mlp.dense_4h_to_h.bias);
            h = h + a + mlp; // parallel residual
        }
        const auto& lnf = model.gpt_neox.final_layer_norm;
        Tensor logits = linear(layer_norm(h, lnf.weight, lnf.bias, lnf.eps), model.embed_out.weight);
        mg::test::require_close(model.forward(ids), logits, 1e-12, 1e-12, dev.str() + " logits");
    }
}

TEST_CASE("transformer: gradcheck of a tiny TransformerLM loss with respect to every parameter", "[transformer][gradcheck]") {
    TransformerConfig cfg;
    cfg.d_model = 4, cfg.n_layer = 1, cfg.n_head = 2, cfg.rotary_pct = 1.0, cfg.vocab_size = 7, cfg.d_ff = 6;
    cfg.init_std = 0.5;
    Generator g(21);
    TransformerLM model(cfg, {DType::f64}, g);
    Tensor ids = random_ids(1, 5, cfg.vocab_size, 8), targets = random_ids(1, 5, cfg.vocab_size, 9);
    std::vector<Tensor> params;
    GradcheckOptions opts;
    for (auto& [n, t] : model.named_parameters()) {
        params.push_back(t);
        opts.names.push_back(n);
    }
    GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) { return cross_entropy(model.forward(ids), targets); },
                                  params, opts);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.num_checked == model.num_parameters());
}

TEST_CASE("transformer: stepping with the KV cache reproduces the parallel forward (f64)", "[transformer]") {
    for (Device dev : devices()) {
        const TransformerConfig cfg = small_transformer();
        Generator g(4);
        TransformerLM model(cfg, {DType::f64, dev}, g);
        const int64_t B = 2, L = 9;
        Tensor ids = random_ids(B, L, cfg.vocab_size, 5).to(dev);
        Tensor full = model.forward(ids); // (B, L, V)
        NoGrad ng;
        TransformerState st = model.make_state(B);
        for (int64_t t = 0; t < L; ++t) {
            Tensor logits = model.step(ids.narrow(1, t, 1).reshape({B}), st);
            mg::test::require_close(logits, full.narrow(1, t, 1).reshape({B, cfg.padded_vocab()}), 1e-12, 1e-12,
                                    fmt::format("{} step {}", dev.str(), t));
        }
        CHECK(st.position == L);
        CHECK(st.layers[0].k.shape() == Shape{B, cfg.n_head, L, cfg.head_dim()});
    }
}

TEST_CASE("transformer: an f32 model on cuda matches cpu", "[transformer][parity][cuda]") {
    MG_REQUIRE_CUDA();
    const TransformerConfig cfg = small_transformer();
    Generator g1(6), g2(6);
    TransformerLM cpu(cfg, {DType::f32}, g1), gpu(cfg, {DType::f32, Device::cuda(0)}, g2);
    Tensor ids = random_ids(3, 70, cfg.vocab_size, 7), tgt = random_ids(3, 70, cfg.vocab_size, 8);
    Tensor lc = cross_entropy(cpu.forward(ids), tgt), lg = cross_entropy(gpu.forward(ids.to(Device::cuda(0))), tgt.to(Device::cuda(0)));
    mg::test::require_close(lg, lc, 1e-5, 1e-5, "loss");
    lc.backward();
    lg.backward();
    auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
    for (size_t i = 0; i < pc.size(); ++i)
        mg::test::require_close(pg[i].second.grad(), pc[i].second.grad(), 1e-4, 1e-5, pc[i].first);
}

TEST_CASE("transformer: config errors name the key and what is allowed", "[transformer][errors]") {
    REQUIRE_ERROR_WITH(TransformerConfig::from_json(nlohmann::json::parse(R"({"n_head": 5})"), "model config", "model."),
                       "model.d_model = 512 is not a multiple of model.n_head = 5");
    REQUIRE_ERROR_WITH(TransformerConfig::from_json(nlohmann::json::parse(R"({"rotary_pct": 2})")), "rotary_pct", "in [0, 1]");
    REQUIRE_ERROR_WITH(TransformerConfig::from_json(nlohmann::json::parse(R"({"preset": "gpt5"})")), "preset",
                       "pythia-70m, pythia-160m, zoology");
    REQUIRE_ERROR_WITH(TransformerConfig::from_json(nlohmann::json::parse(R"({"d_state": 16})")), "unknown key 'd_state'");
    REQUIRE_ERROR_WITH(TransformerConfig::from_json(nlohmann::json::parse(R"({"d_model": 24, "n_head": 2, "rotary_pct": 0.25})")),
                       "rotates int(12 * 0.25) = 3 dims", "even");
    const TransformerConfig cfg = small_transformer();
    Generator g(1);
    TransformerLM model(cfg, {DType::f32}, g);
    REQUIRE_ERROR_WITH(model.forward(Tensor::zeros({2, 3})), "TransformerLM", "ids is (2,3) f32 cpu", "i32 (B, L)");
}
