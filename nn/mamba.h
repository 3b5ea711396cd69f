// nn/mamba.h: the Mamba mixer (with optional global selection), the prenorm residual block, and
// the language model, in parallel (training) and recurrent (generation) form. SPEC §2.
//
// Glossary: B batch, L length, d = d_model, D = d_inner = expand d, N = d_state, R = dt_rank,
// K = d_conv, K_long = the long conv's kernel, V = padded vocab.
//
// Mixer, u (B, L, d) -> (B, L, d):
//   x, z   = split(in_proj(u))                in_proj: d -> 2D, no bias (linear_split: x and z
//                                             computed as two contiguous pieces, nothing copied)
//   g      = long_conv(x)                     global selection only; x BEFORE the short conv
//   xc     = silu(conv1d(x))                  depthwise causal, kernel K, with bias
//   dt_r, Bm, Cm = split(x_proj(xc))          x_proj: D -> R + 2N, no bias
//   dt     = dt_r @ dt_proj.weight^T          the bias is NOT added here ...
//   dt     = dt * f(g)                        global selection gate (g from either kind of
//                                             long conv: LongConv or FlashLongConv, nn/layers.h;
//                                             f = silu (the authors' code) or sigmoid:
//                                             global_selection.gate, docs/global_selection.md)
//   y      = selective_scan(xc, dt, A = -exp(A_log), Bm, Cm, D, z,
//                           delta_bias = dt_proj.bias, softplus)   ... but inside the scan
//   out    = out_proj(y)                      D -> d, no bias
// LM: h = embedding(ids); per layer (h, res) = (mixer(norm(h + res)), h + res) (mamba_ssm's
// Add -> Norm -> Mixer, residual undefined before the first layer); logits =
// norm_f(h + res) @ embedding.weight^T (lm_head tied: not a parameter of its own).
// The residual stream has the model's dtype (f32 for an f32 model: mamba's residual_in_fp32).
//
// Parameter names are mamba_ssm's (checkpoints map 1:1): backbone.embedding.weight,
// backbone.layers.{i}.mixer.{A_log, D, in_proj.weight, conv1d.weight, conv1d.bias,
// [long_conv.weight, long_conv.bias,] x_proj.weight, dt_proj.weight, dt_proj.bias,
// out_proj.weight}, backbone.layers.{i}.norm.weight, backbone.norm_f.weight. With
// global_selection.kind = flashlongconv the long_conv entries are instead long_conv.{D, kernel,
// output_linear.weight, output_linear.bias} (nn/layers.h FlashLongConv; the authors' module
// calls them module.{D, kernel, output_linear.0.weight, output_linear.0.bias}).
//
// Initialisation (cfg.init):
//   every Linear / Conv1d: PyTorch's default U(±1/sqrt(fan_in)) (nn/layers.h), which for
//     dt_proj.weight is mamba's U(±R^-0.5); RMSNorm weights 1; A_log[d, n] = log(n + 1);
//     D = 1; the long conv U(±1/sqrt(K_long)) (PyTorch default, as in the authors' code), or
//     for flashlongconv the authors' FlashLongconv init (nn/layers.h);
//   mamba (mamba_ssm): dt_proj.bias = softplus^-1(dt) = dt + log(-expm1(-dt)) with
//     dt = exp(U(log 1e-3, log 1e-1)) floored at 1e-4, so softplus(bias) = dt in [1e-3, 1e-1];
//     embedding N(0, 0.02); out_proj.weight divided by sqrt(n_layer) (GPT-2's prenorm residual
//     rescale, mamba_ssm _init_weights with one residual per layer);
//   paper-code (what the authors' code ran, paper-code.md §3.2): dt_proj.bias = 0; embedding
//     N(0, 0.1); out_proj not rescaled (HF's rescale_prenorm_residual defaults to false).
// Draws come from one Generator in construction order, so a seed fixes the model bit for bit
// on every device.
//
// Recurrent mode: InferenceState holds per layer the short conv's state (B, D, K-1), the SSM
// state (B, D, N) and, with global selection, the long conv's state (B, D, K_long-1) (its last
// K_long-1 inputs, shifted by one each step; the same for both kinds). Stepping never applies
// dropout, so it matches the parallel forward in eval() mode. step() feeds one token per sequence and returns its
// logits; stepping through a sequence reproduces the parallel forward's logits.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/lm.h"
#include "nn/module.h"
#include "tensor/error.h"

namespace mg::nn {

// Per-layer generation state. long_conv_state is undefined in layers without global selection.
struct LayerState {
    Tensor conv_state;      // (B, D, K-1)
    Tensor ssm_state;       // (B, D, N)
    Tensor long_conv_state; // (B, D, K_long-1)
};

// What one mixer computed on the way to its output, for looking inside a model (`mambagrad
// probe`, train/probe.h): detached (B, L, D) tensors in the model's dtype. gate and the gated
// dt are only defined in global-selection layers.
//   x     the branch the short conv and the long conv read (in_proj's first half)
//   gate  f(long_conv(x)), the global selection gate (f = silu or sigmoid)
//   dt    dt_proj.weight @ dt_r, times the gate where there is one (before the bias)
//   delta Δ = softplus(dt + dt_proj.bias), the scan's step; exp(Δ A_n) is its decay
//   out   the mixer's output (B, L, d), what the layer adds to the residual stream
struct MixerTrace {
    Tensor x, gate, dt, delta, out;
};

struct InferenceState : RecurrentState { // batch, position: RecurrentState's
    std::vector<LayerState> layers;
};

class MambaMixer : public Module {
public:
    // layer_idx selects whether global selection applies (cfg.global_selection.layers).
    MambaMixer(const MambaConfig& cfg, int64_t layer_idx, Options o, Generator& gen);

    // (B, L, d) -> (B, L, d); with `trace`, also records what it computed (MixerTrace).
    Tensor forward(const Tensor& u, MixerTrace* trace = nullptr) const;
    Tensor step(const Tensor& u_t, LayerState& state) const; // (B, d) -> (B, d); advances state
    LayerState make_state(int64_t batch) const;              // zeros, on the parameters' device
    bool global_selection() const { return long_conv != nullptr; }
    // The global-selection branch as its kind (LongConv or FlashLongConv); throws when this layer
    // has none or another kind.
    template <typename Kind> Kind& long_conv_as() const {
        Kind* k = dynamic_cast<Kind*>(long_conv.get());
        if (!k) throw Error(long_conv ? "MambaMixer::long_conv_as: this layer's global selection is of another kind"
                                      : "MambaMixer::long_conv_as: this layer has no global selection");
        return *k;
    }
    // The gate f(g) of the long conv's output g (gate_function, after gate_input's normalisation).
    Tensor gate_of(const Tensor& g) const;
    // The long conv's input: x, or x.detach() (gate_input detached).
    Tensor gate_source(const Tensor& x) const;

    int64_t d_model, d_inner, d_state, dt_rank;
    GateFunction gate_function;
    GateInput gate_input;
    double norm_eps;
    Linear in_proj;
    Conv1d conv1d;
    // The global-selection branch (LongConv or FlashLongConv, registered as "long_conv" whichever
    // its kind); null without global selection in this layer.
    std::unique_ptr<GlobalSelectionConv> long_conv;
    Linear x_proj, dt_proj, out_proj;
    Tensor A_log, D; // (D, N), (D)
};

// Prenorm residual block: (h, residual) -> (mixer(norm(h + residual)), h + residual).
class MambaBlock : public Module {
public:
    MambaBlock(const MambaConfig& cfg, int64_t layer_idx, Options o, Generator& gen);
    struct Out {
        Tensor hidden, residual;
    };
    Out forward(const Tensor& hidden, const Tensor& residual, MixerTrace* trace = nullptr) const;
    Out step(const Tensor& hidden, const Tensor& residual, LayerState& state) const;

    MambaMixer mixer;
    RMSNorm norm;
};

// embedding -> blocks -> norm_f: ids (B, L) -> hidden (B, L, d).
class MambaBackbone : public Module {
public:
    MambaBackbone(const MambaConfig& cfg, Options o, Generator& gen);
    // trace, when given, receives one MixerTrace per layer.
    Tensor forward(const Tensor& ids, std::vector<MixerTrace>* trace = nullptr) const;

    Embedding embedding;
    std::vector<std::unique_ptr<MambaBlock>> layers;
    RMSNorm norm_f;
};

class MambaLM : public LanguageModel {
public:
    explicit MambaLM(const MambaConfig& cfg, Options o = {}, Generator& gen = default_generator());

    std::string_view arch() const override { return "mamba"; }
    Tensor forward(const Tensor& ids) const override;
    Tensor hidden_states(const Tensor& ids) const override { return hidden_states(ids, nullptr); }
    Tensor hidden_states(const Tensor& ids, std::vector<MixerTrace>* trace) const;
    const Tensor& lm_head_weight() const override { return backbone.embedding.weight; }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    void set_dropout_generator(Generator* gen) override;

    InferenceState make_state(int64_t batch) const;
    Tensor step(const Tensor& ids, InferenceState& state) const;
    std::unique_ptr<RecurrentState> make_recurrent_state(int64_t batch) const override;
    Tensor step(const Tensor& ids, RecurrentState& state) const override;

    void load_state_dict(const StateDict& dict) override;

    const MambaConfig& config() const { return cfg_; }

private:
    MambaConfig cfg_;

public:
    MambaBackbone backbone;
};

} // namespace mg::nn
