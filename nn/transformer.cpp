// nn/transformer.cpp: see transformer.h.
#include "nn/transformer.h"

#include "autograd/grad_mode.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cat.h"
#include "ops/linear.h"
#include "ops/rope.h"
#include "tensor/check.h"
#include "tensor/json.h"

namespace mg::nn {

using nlohmann::json;

namespace {

const std::vector<std::string> kKeys = {"preset",     "d_model",     "n_layer",        "n_head",
                                        "d_ff",       "vocab_size",  "pad_vocab_size_multiple",
                                        "rotary_pct", "rotary_base", "layer_norm_eps", "init_std"};
const std::vector<std::string> kPresets = {"pythia-70m", "pythia-160m", "zoology"};

// transformers' init of a Linear: weight N(0, std^2), bias 0.
void init_linear(Linear& l, double std, Generator& gen) {
    NoGrad ng;
    const Options o = l.weight.options();
    l.weight = (Tensor::randn(l.weight.shape(), {o.dtype, o.device}, gen) * std).detach().set_requires_grad(true);
    if (l.bias.defined()) l.bias = Tensor::zeros(l.bias.shape(), {o.dtype, o.device}).set_requires_grad(true);
}

} // namespace

// ---- config ---------------------------------------------------------------------------------
int64_t TransformerConfig::padded_vocab() const { return round_up_vocab(vocab_size, pad_vocab_size_multiple); }

void TransformerConfig::validate(const std::string& where, const std::string& prefix) const {
    auto positive = [&](const char* key, int64_t v) { check_positive(where, prefix, key, v); };
    positive("d_model", d_model);
    positive("n_layer", n_layer);
    positive("n_head", n_head);
    positive("vocab_size", vocab_size);
    positive("pad_vocab_size_multiple", pad_vocab_size_multiple);
    MG_CHECK(d_ff >= 0, "{}: {}d_ff = {}, expected 0 (4 d_model) or a positive integer", where, prefix, d_ff);
    MG_CHECK(d_model % n_head == 0, "{}: {}d_model = {} is not a multiple of {}n_head = {}", where, prefix, d_model,
             prefix, n_head);
    MG_CHECK(rotary_pct >= 0 && rotary_pct <= 1, "{}: {}rotary_pct = {}, expected a number in [0, 1]", where, prefix,
             rotary_pct);
    MG_CHECK(rotary_dims() % 2 == 0, "{}: {}rotary_pct = {} rotates int({} * {}) = {} dims of each head, expected an "
             "even number", where, prefix, rotary_pct, head_dim(), rotary_pct, rotary_dims());
    MG_CHECK(rotary_base > 0, "{}: {}rotary_base = {}, expected > 0", where, prefix, rotary_base);
    MG_CHECK(layer_norm_eps > 0, "{}: {}layer_norm_eps = {}, expected > 0", where, prefix, layer_norm_eps);
    MG_CHECK(init_std > 0, "{}: {}init_std = {}, expected > 0", where, prefix, init_std);
}

TransformerConfig TransformerConfig::preset(std::string_view name, int64_t d_model) {
    TransformerConfig c;
    if (name == "pythia-70m") {
        c.d_model = 512, c.n_layer = 6, c.n_head = 8;
    } else if (name == "pythia-160m") {
        c.d_model = 768, c.n_layer = 12, c.n_head = 12;
    } else if (name == "zoology") {
        c.d_model = d_model > 0 ? d_model : 128, c.n_layer = 2, c.n_head = 2, c.vocab_size = 8192, c.rotary_pct = 1.0;
    } else {
        throw Error(fmt::format("model config: preset is '{}', expected one of: {}", name, fmt::join(kPresets, ", ")));
    }
    MG_CHECK(d_model <= 0 || name == "zoology" || d_model == c.d_model,
             "model config: preset '{}' has d_model {}; only the zoology preset takes a d_model ({} given)", name,
             c.d_model, d_model);
    return c;
}

nlohmann::ordered_json TransformerConfig::to_json() const {
    return nlohmann::ordered_json{{"d_model", d_model},       {"n_layer", n_layer},
                                  {"n_head", n_head},         {"d_ff", d_ff},
                                  {"vocab_size", vocab_size}, {"pad_vocab_size_multiple", pad_vocab_size_multiple},
                                  {"rotary_pct", rotary_pct}, {"rotary_base", rotary_base},
                                  {"layer_norm_eps", layer_norm_eps}, {"init_std", init_std}};
}

TransformerConfig TransformerConfig::from_json(const json& j, const std::string& where, const std::string& prefix) {
    JsonSection s(j, where, prefix, kKeys);
    TransformerConfig c;
    if (const json* v = s.find("preset")) c = preset(s.choice("preset", *v, kPresets));
    s.integer("d_model", c.d_model, 1);
    s.integer("n_layer", c.n_layer, 1);
    s.integer("n_head", c.n_head, 1);
    s.integer("d_ff", c.d_ff, 0);
    s.integer("vocab_size", c.vocab_size, 1);
    s.integer("pad_vocab_size_multiple", c.pad_vocab_size_multiple, 1);
    s.number("rotary_pct", c.rotary_pct, 0.0, 1.0, "in [0, 1]");
    s.number("rotary_base", c.rotary_base, 1e-300, 1e300, "> 0");
    s.number("layer_norm_eps", c.layer_norm_eps, 1e-300, 1.0, "in (0, 1]");
    s.number("init_std", c.init_std, 1e-300, 1e300, "> 0");
    c.validate(where, prefix);
    return c;
}

std::vector<ParameterSpec> parameter_specs(const TransformerConfig& c) {
    c.validate();
    const int64_t d = c.d_model, f = c.ff_width();
    std::vector<ParameterSpec> out = {{"gpt_neox.embed_in.weight", {c.padded_vocab(), d}}};
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
        for (const char* ln : {"input_layernorm", "post_attention_layernorm"}) {
            out.push_back({p + ln + ".weight", {d}});
            out.push_back({p + ln + ".bias", {d}});
        }
        out.push_back({p + "attention.query_key_value.weight", {3 * d, d}});
        out.push_back({p + "attention.query_key_value.bias", {3 * d}});
        out.push_back({p + "attention.dense.weight", {d, d}});
        out.push_back({p + "attention.dense.bias", {d}});
        out.push_back({p + "mlp.dense_h_to_4h.weight", {f, d}});
        out.push_back({p + "mlp.dense_h_to_4h.bias", {f}});
        out.push_back({p + "mlp.dense_4h_to_h.weight", {d, f}});
        out.push_back({p + "mlp.dense_4h_to_h.bias", {d}});
    }
    out.push_back({"gpt_neox.final_layer_norm.weight", {d}});
    out.push_back({"gpt_neox.final_layer_norm.bias", {d}});
    out.push_back({"embed_out.weight", {c.padded_vocab(), d}});
    return out;
}

int64_t count_parameters(const TransformerConfig& cfg) {
    int64_t n = 0;
    for (const ParameterSpec& p : parameter_specs(cfg)) n += p.numel();
    return n;
}

// ---- layers ---------------------------------------------------------------------------------
GPTNeoXAttention::GPTNeoXAttention(const TransformerConfig& cfg, Options o, Generator& gen)
    : n_head(cfg.n_head), head_dim(cfg.head_dim()), rotary_dims(cfg.rotary_dims()), rotary_base(cfg.rotary_base),
      query_key_value(cfg.d_model, 3 * cfg.d_model, true, o, gen), dense(cfg.d_model, cfg.d_model, true, o, gen) {
    init_linear(query_key_value, cfg.init_std, gen);
    init_linear(dense, cfg.init_std, gen);
    register_module("query_key_value", query_key_value);
    register_module("dense", dense);
}

Tensor GPTNeoXAttention::forward(const Tensor& x, KVCache* cache) const {
    const int64_t d = n_head * head_dim;
    MG_CHECK(x.dim() == 3 && x.size(2) == d, "GPTNeoXAttention: x is {}, expected (B, L, d_model) with d_model = {}",
             x.desc(), d);
    const int64_t B = x.size(0), L = x.size(1);
    const int64_t pos = cache && cache->k.defined() ? cache->k.size(2) : 0;
    // (B, L, 3d) -> (B, L, H, 3 Dh): head h's q, k, v are its three consecutive Dh-blocks
    Tensor qkv = query_key_value.forward(x).reshape({B, L, n_head, 3 * head_dim});
    auto part = [&](int64_t i) { return qkv.narrow(3, i * head_dim, head_dim).permute({0, 2, 1, 3}); }; // (B,H,L,Dh)
    Tensor q = rope(part(0), rotary_dims, rotary_base, pos), k = rope(part(1), rotary_dims, rotary_base, pos);
    Tensor v = part(2);
    if (cache) {
        if (cache->k.defined()) {
            k = cat({cache->k, k}, 2);
            v = cat({cache->v, v}, 2);
        }
        cache->k = k.detach();
        cache->v = v.detach().contiguous();
    }
    Tensor o = attention(q, k, v, /*causal=*/true); // scale 1 / sqrt(Dh)
    return dense.forward(o.permute({0, 2, 1, 3}).reshape({B, L, d}));
}

GPTNeoXMLP::GPTNeoXMLP(const TransformerConfig& cfg, Options o, Generator& gen)
    : dense_h_to_4h(cfg.d_model, cfg.ff_width(), true, o, gen), dense_4h_to_h(cfg.ff_width(), cfg.d_model, true, o, gen) {
    init_linear(dense_h_to_4h, cfg.init_std, gen);
    init_linear(dense_4h_to_h, cfg.init_std, gen);
    register_module("dense_h_to_4h", dense_h_to_4h);
    register_module("dense_4h_to_h", dense_4h_to_h);
}

Tensor GPTNeoXMLP::forward(const Tensor& x) const { return dense_4h_to_h.forward(gelu(dense_h_to_4h.forward(x))); }

GPTNeoXLayer::GPTNeoXLayer(const TransformerConfig& cfg, Options o, Generator& gen)
    : input_layernorm(cfg.d_model, cfg.layer_norm_eps, o), post_attention_layernorm(cfg.d_model, cfg.layer_norm_eps, o),
      attention(cfg, o, gen), mlp(cfg, o, gen) {
    register_module("input_layernorm", input_layernorm);
    register_module("post_attention_layernorm", post_attention_layernorm);
    register_module("attention", attention);
    register_module("mlp", mlp);
}

Tensor GPTNeoXLayer::forward(const Tensor& h, KVCache* cache) const {
    return h + attention.forward(input_layernorm.forward(h), cache) + mlp.forward(post_attention_layernorm.forward(h));
}

GPTNeoXModel::GPTNeoXModel(const TransformerConfig& cfg, Options o, Generator& gen)
    : embed_in(cfg.padded_vocab(), cfg.d_model, cfg.init_std, o, gen), final_layer_norm(cfg.d_model, cfg.layer_norm_eps, o) {
    register_module("embed_in", embed_in);
    for (int64_t i = 0; i < cfg.n_layer; ++i) {
        layers.push_back(std::make_unique<GPTNeoXLayer>(cfg, o, gen));
        register_module("layers." + std::to_string(i), *layers.back());
    }
    register_module("final_layer_norm", final_layer_norm);
}

Tensor GPTNeoXModel::forward(const Tensor& ids, std::vector<KVCache>* caches) const {
    MG_CHECK(ids.dim() == 2 && ids.dtype() == DType::i32, "TransformerLM: ids is {}, expected i32 (B, L)", ids.desc());
    MG_CHECK(!caches || caches->size() == layers.size(), "TransformerLM: {} caches for {} layers", caches ? caches->size() : 0,
             layers.size());
    Tensor h = embed_in.forward(ids);
    for (size_t i = 0; i < layers.size(); ++i) h = layers[i]->forward(h, caches ? &(*caches)[i] : nullptr);
    return final_layer_norm.forward(h);
}

// ---- the language model ---------------------------------------------------------------------
TransformerLM::TransformerLM(const TransformerConfig& cfg, Options o, Generator& gen)
    : cfg_((cfg.validate(), cfg)), gpt_neox(cfg, o, gen), embed_out(cfg.d_model, cfg.padded_vocab(), false, o, gen) {
    init_linear(embed_out, cfg.init_std, gen);
    register_module("gpt_neox", gpt_neox);
    register_module("embed_out", embed_out);
}

Tensor TransformerLM::hidden_states(const Tensor& ids) const { return gpt_neox.forward(ids); }

Tensor TransformerLM::forward(const Tensor& ids) const { return linear(hidden_states(ids), embed_out.weight); }

TransformerState TransformerLM::make_state(int64_t batch) const {
    MG_CHECK(batch >= 1, "TransformerLM::make_state: batch = {}, expected >= 1", batch);
    TransformerState s;
    s.layers.resize(gpt_neox.layers.size());
    s.batch = batch;
    return s;
}

std::unique_ptr<RecurrentState> TransformerLM::make_recurrent_state(int64_t batch) const {
    return std::make_unique<TransformerState>(make_state(batch));
}

Tensor TransformerLM::step(const Tensor& ids, RecurrentState& state) const {
    auto* s = dynamic_cast<TransformerState*>(&state);
    MG_CHECK(s, "TransformerLM::step: the recurrent state was made by another kind of model; make it with "
             "make_recurrent_state()");
    return step(ids, *s);
}

Tensor TransformerLM::step(const Tensor& ids, TransformerState& state) const {
    MG_CHECK(ids.dim() == 1 && ids.size(0) == state.batch, "TransformerLM::step: ids is {}, expected i32 (B) with B = {}",
             ids.desc(), state.batch);
    MG_CHECK(ids.dtype() == DType::i32 && state.layers.size() == gpt_neox.layers.size(),
             "TransformerLM::step: ids is {}, state has {} layers for the model's {}; expected i32 ids and a state "
             "from make_state()", ids.desc(), state.layers.size(), gpt_neox.layers.size());
    NoGrad ng;
    Tensor h = gpt_neox.forward(ids.reshape({state.batch, 1}), &state.layers); // (B, 1, d)
    state.position += 1;
    return linear(h.reshape({state.batch, cfg_.d_model}), embed_out.weight);
}

} // namespace mg::nn
