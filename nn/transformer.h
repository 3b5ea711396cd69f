// nn/transformer.h: the attention baseline, a GPT-NeoX (Pythia) language model built from ops/.
//
// Exactly as transformers' GPTNeoXForCausalLM computes it with Pythia's settings
// (use_parallel_residual, rotary position embedding, untied output embedding, GELU MLP):
//
//   h_0 = embed_in[ids]                                               (B, L, d)
//   per layer:  h = h + attention(LN_1(h)) + mlp(LN_2(h))             (parallel residual)
//     attention(x): qkv = x W_qkv^T + b   (B, L, 3d) viewed as (B, L, H, 3 Dh): per head q, k, v
//                   are consecutive Dh-blocks (GPT-NeoX's layout, not three d-blocks);
//                   q, k <- rope(q, k) on the first R = int(Dh rotary_pct) dims (base 10000);
//                   o = causal softmax(q k^T / sqrt(Dh)) v; heads concatenated; o W_dense^T + b
//     mlp(x):       dense_4h_to_h(gelu(dense_h_to_4h(x)))   (exact erf GELU, width d_ff = 4d)
//   logits = LN_f(h_n) embed_out^T
//
// Shapes: B batch, L length, d = d_model, H = n_head, Dh = d / H, V = padded vocab.
// Parameter names are transformers' (a checkpoint maps 1:1): gpt_neox.embed_in.weight,
// gpt_neox.layers.{i}.{input_layernorm, post_attention_layernorm}.{weight, bias},
// gpt_neox.layers.{i}.attention.{query_key_value, dense}.{weight, bias},
// gpt_neox.layers.{i}.mlp.{dense_h_to_4h, dense_4h_to_h}.{weight, bias},
// gpt_neox.final_layer_norm.{weight, bias}, embed_out.weight; in that order.
// Init (transformers' GPTNeoXPreTrainedModel._init_weights): linear and embedding weights
// N(0, init_std^2) (0.02), biases 0, LayerNorm weight 1 and bias 0.
// Recurrent generation: make_state + step keep each layer's keys and values (a KV cache); a
// step's queries attend every cached position (ops/attention.h's bottom-right causal mask) and
// rotate at their absolute position, so stepping equals the parallel forward (a test checks it).
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/lm.h"
#include "nn/module.h"

namespace mg::nn {

// JSON (every key optional; "preset" first, the others override it):
//   {"preset": "pythia-70m", "d_model": 512, "n_layer": 6, "n_head": 8, "d_ff": 2048,
//    "vocab_size": 50304, "pad_vocab_size_multiple": 8, "rotary_pct": 0.25, "rotary_base": 10000,
//    "layer_norm_eps": 1e-5, "init_std": 0.02}
struct TransformerConfig {
    int64_t d_model = 512;
    int64_t n_layer = 6;
    int64_t n_head = 8;
    int64_t d_ff = 0; // 0: 4 d_model
    int64_t vocab_size = 50304;
    int64_t pad_vocab_size_multiple = 8;
    double rotary_pct = 0.25;
    double rotary_base = 10000;
    double layer_norm_eps = 1e-5;
    double init_std = 0.02;

    int64_t head_dim() const { return d_model / n_head; }
    int64_t rotary_dims() const { return int64_t(double(head_dim()) * rotary_pct); } // transformers' int()
    int64_t ff_width() const { return d_ff > 0 ? d_ff : 4 * d_model; }
    int64_t padded_vocab() const;
    void validate(const std::string& where = "model config", const std::string& prefix = "") const;

    // "pythia-70m":  d_model 512, 6 layers, 8 heads (70,426,624 parameters);
    // "pythia-160m": d_model 768, 12 layers, 12 heads (162,322,944 parameters);
    // "zoology":     the MQAR size of the zoology Mamba preset: d_model 128 (or as given), 2
    //                layers, 2 heads, vocab 8192, every head dim rotated (rotary_pct 1).
    static TransformerConfig preset(std::string_view name, int64_t d_model = 0);
    nlohmann::ordered_json to_json() const;
    static TransformerConfig from_json(const nlohmann::json& j, const std::string& where = "model config",
                                       const std::string& prefix = "");
};

// TransformerLM(cfg)'s parameters in named_parameters() order, from the config alone.
std::vector<ParameterSpec> parameter_specs(const TransformerConfig& cfg);
int64_t count_parameters(const TransformerConfig& cfg);

// One layer's KV cache: keys and values of every position so far, (B, H, T, Dh).
struct KVCache {
    Tensor k, v;
};

class GPTNeoXAttention : public Module {
public:
    GPTNeoXAttention(const TransformerConfig& cfg, Options o, Generator& gen);
    // x (B, L, d) -> (B, L, d). With a cache: the L new positions attend the cached ones too,
    // starting at position `pos` (the cache's length), and are appended to it.
    Tensor forward(const Tensor& x, KVCache* cache = nullptr) const;

    int64_t n_head, head_dim, rotary_dims;
    double rotary_base;
    Linear query_key_value, dense;
};

class GPTNeoXMLP : public Module {
public:
    GPTNeoXMLP(const TransformerConfig& cfg, Options o, Generator& gen);
    Tensor forward(const Tensor& x) const;

    Linear dense_h_to_4h, dense_4h_to_h;
};

class GPTNeoXLayer : public Module {
public:
    GPTNeoXLayer(const TransformerConfig& cfg, Options o, Generator& gen);
    Tensor forward(const Tensor& h, KVCache* cache = nullptr) const; // h + attn(LN1 h) + mlp(LN2 h)

    LayerNorm input_layernorm, post_attention_layernorm;
    GPTNeoXAttention attention;
    GPTNeoXMLP mlp;
};

class GPTNeoXModel : public Module {
public:
    GPTNeoXModel(const TransformerConfig& cfg, Options o, Generator& gen);
    // ids i32 (B, L) -> LN_f(h_n) (B, L, d); caches: one per layer, or null
    Tensor forward(const Tensor& ids, std::vector<KVCache>* caches = nullptr) const;

    Embedding embed_in;
    std::vector<std::unique_ptr<GPTNeoXLayer>> layers;
    LayerNorm final_layer_norm;
};

// The recurrent state of TransformerLM: a KV cache per layer (batch, position: RecurrentState's).
struct TransformerState : RecurrentState {
    std::vector<KVCache> layers;
};

class TransformerLM : public LanguageModel {
public:
    explicit TransformerLM(const TransformerConfig& cfg, Options o = {}, Generator& gen = default_generator());

    std::string_view arch() const override { return "transformer"; }
    Tensor forward(const Tensor& ids) const override;       // i32 (B, L) -> logits (B, L, V)
    Tensor hidden_states(const Tensor& ids) const override; // (B, L, d), before the output embedding
    const Tensor& lm_head_weight() const override { return embed_out.weight; }
    int64_t vocab_size() const override { return cfg_.vocab_size; }

    TransformerState make_state(int64_t batch) const;
    Tensor step(const Tensor& ids, TransformerState& state) const; // i32 (B) -> logits (B, V)
    std::unique_ptr<RecurrentState> make_recurrent_state(int64_t batch) const override;
    Tensor step(const Tensor& ids, RecurrentState& state) const override;

    const TransformerConfig& config() const { return cfg_; }

private:
    TransformerConfig cfg_;

public:
    GPTNeoXModel gpt_neox;
    Linear embed_out;
};

} // namespace mg::nn
