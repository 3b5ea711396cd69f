// nn/config.h: MambaConfig, the model's hyper-parameters, its presets and its JSON form.
//
// Defaults are mamba_ssm's (SPEC §2, reference/peers.md §1.6-1.7): d_state 16, d_conv 4,
// expand 2, dt_rank ceil(d_model / 16), RMSNorm eps 1e-5, vocab padded up to a multiple of 8
// (pad_vocab_size_multiple), tied lm_head. Global selection (SPEC §2, paper-code.md §4) adds a
// long causal depthwise conv (kernel k_long, with bias) on the x branch of the chosen layers,
// whose SiLU gates dt.
//
// JSON (every key optional; "preset" is applied first and the other keys override it):
//   {"preset": "tiny", "d_model": 256, "n_layer": 8, "vocab_size": 20480,
//    "pad_vocab_size_multiple": 8, "d_state": 16, "d_conv": 4, "expand": 2,
//    "dt_rank": "auto" | 32, "norm_eps": 1e-5, "init": "mamba" | "paper-code",
//    "global_selection": {"enabled": true, "kind": "longconv" | "flashlongconv", "k_long": 128,
//                         "layers": "all" | [0, 3], "mode": "auto" | "direct" | "fft",
//                         "gate": "silu" | "sigmoid", "gate_input": "raw" | "normalized" | "detached"}}
// Unknown keys, wrong types and values out of range are errors that name the key and what is
// allowed.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ops/fft_conv.h"
#include "tensor/shape.h"

namespace mg::nn {

// How parameters are initialised (nn/mamba.h documents both in full).
//   mamba:      mamba_ssm's LM init (dt_proj.bias = softplus^-1 of log-uniform dt, embedding
//               N(0, 0.02), out_proj / sqrt(n_layer)).
//   paper_code: what the authors' code ran (paper-code.md §3.2): dt_proj.bias = 0, embedding
//               N(0, 0.1), out_proj not rescaled.
enum class InitScheme { mamba, paper_code };

// longconv: explicit per-channel kernel of length k_long with bias (the paper's "+4M" setting).
// flashlongconv: the paper's heavier FFT module for its largest models (nn/layers.h
//                FlashLongConv): kernel of k_long taps soft-thresholded at 0.003, + u D skip,
//                GELU, dropout 0.2 (training only), output_linear D -> 2D and GLU; `mode` picks
//                how its conv is computed.
enum class GlobalSelectionKind { longconv, flashlongconv };

// The function f of the gate dt * f(g) (docs/global_selection.md):
//   sigmoid (the default): bounded in (0, 1), so the gated dt never exceeds the ungated one in
//            magnitude and Δ = softplus(dt f(g) + bias) stays in the plain model's range;
//   silu:    the authors' code (unbounded above, min -0.278). At the paper's tiny size it diverges
//            in training with every recipe tried, the authors' included: Adam grows the gate
//            (max 27-68 by step 400), Δ and each layer's output follow, the run dies.
// A stored config without "gate" (checkpoints written before this key existed) means silu
// (train::checkpoint_config fills it in), so those checkpoints keep computing what they did.
enum class GateFunction { silu, sigmoid };

// What the gate function sees (issue 22's experiments; docs/global_selection.md §6):
//   raw (the default, the authors'): g = LongConv(x);
//   normalized: g / rms(g) over the d_inner channels at each position (an RMSNorm without weight,
//               eps norm_eps): causal, and it keeps the gate in its sensitive range however large x
//               grows (with raw g the gate saturates to 0 / 1 within 400 steps at the tiny size);
//   detached:   g = LongConv(x.detach()): the long conv still learns, but no gradient flows from the
//               gate back into x (and so into in_proj and the layers below).
enum class GateInput { raw, normalized, detached };

struct GlobalSelection {
    bool enabled = false;
    GlobalSelectionKind kind = GlobalSelectionKind::longconv;
    int64_t k_long = 128;
    std::vector<int64_t> layers;                        // empty: every layer
    CausalConvMode mode = CausalConvMode::automatic;        // direct conv, FFT, or chosen by size
    GateFunction gate = GateFunction::sigmoid;           // the gate's function (see GateFunction)
    GateInput gate_input = GateInput::raw;               // what the gate function sees (see GateInput)
    bool applies_to(int64_t layer) const;               // enabled and the layer is selected
};

struct MambaConfig {
    int64_t d_model = 768;
    int64_t n_layer = 24;
    int64_t vocab_size = 50280;
    int64_t pad_vocab_size_multiple = 8;
    int64_t d_state = 16;
    int64_t d_conv = 4;
    int64_t expand = 2;
    int64_t dt_rank = 0; // 0: "auto" = ceil(d_model / 16)
    double norm_eps = 1e-5;
    InitScheme init = InitScheme::mamba;
    GlobalSelection global_selection;

    int64_t d_inner() const { return expand * d_model; }
    int64_t resolved_dt_rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
    // vocab_size rounded up to a multiple of pad_vocab_size_multiple: the embedding's rows and
    // the logits' width.
    int64_t padded_vocab() const;

    // Throws mg::Error "<where>: <prefix><field> = ..., expected ..." naming the first bad field.
    void validate(const std::string& where = "model config", const std::string& prefix = "") const;

    // "zoology": 2 layers, vocab 8192 (zoology's MQAR sweep), d_model as given (64-512; 128 when
    //            0);
    // "tiny":    the paper's mamba-tiny: d_model 256, 8 layers, vocab 20480, dt_rank 32
    //            (paper-code.md §3.1; ≈ 8.9M parameters);
    // "130m":    mamba-130m: d_model 768, 24 layers, vocab 50280 (129,135,360 parameters).
    static MambaConfig preset(std::string_view name, int64_t d_model = 0);

    // Every field (the preset resolved). from_json(to_json()) gives the same config.
    nlohmann::ordered_json to_json() const;
    // Reads the model config object (every key optional: the defaults above, or the preset's);
    // throws mg::Error "<where>: <prefix><key> is <value>, expected ..." (tensor/json.h's
    // JsonSection, the reader of every config). train/ passes ("train config", "model.").
    static MambaConfig from_json(const nlohmann::json& j, const std::string& where = "model config",
                                 const std::string& prefix = "");
    static MambaConfig parse(std::string_view text); // from_json of JSON text
};

// The helpers both model configs (MambaConfig, nn/transformer.h's TransformerConfig) share:
// vocab rounded up to a multiple (at least 1) of `multiple`, and the check of a field that must be
// a positive integer of at most kMaxModelSize ("<where>: <prefix><key> = v, expected a positive
// integer").
int64_t round_up_vocab(int64_t vocab, int64_t multiple);
inline constexpr int64_t kMaxModelSize = int64_t(1) << 24; // the largest size check_positive accepts
void check_positive(const std::string& where, const std::string& prefix, const char* key, int64_t v);

// One parameter of MambaLM(cfg): its mamba_ssm name and shape.
struct ParameterSpec {
    std::string name;
    Shape shape;
    int64_t numel() const { return numel_of(shape); }
    bool operator==(const ParameterSpec&) const = default;
};

// MambaLM(cfg)'s parameters, in named_parameters() order (lm_head tied: not listed), from the
// config alone, without building the model (mamba-130m's would take 0.5 GB and seconds to
// initialise). With d = d_model, D = d_inner, R = dt_rank, N = d_state, k = d_conv, per layer i:
//   backbone.layers.i.mixer.A_log (D, N), .D (D), .in_proj.weight (2D, d),
//   .conv1d.weight (D, 1, k), .conv1d.bias (D),
//   [.long_conv.weight (D, 1, k_long), .long_conv.bias (D)   global-selection layers only;
//    kind flashlongconv: .long_conv.D (1, D), .long_conv.kernel (1, D, k_long),
//    .long_conv.output_linear.weight (2D, D), .long_conv.output_linear.bias (2D)]
//   .x_proj.weight (R + 2N, D), .dt_proj.weight (D, R), .dt_proj.bias (D), .out_proj.weight (d, D),
//   backbone.layers.i.norm.weight (d);
// first backbone.embedding.weight (V_padded, d), last backbone.norm_f.weight (d).
// A test checks names and shapes against built models.
std::vector<ParameterSpec> parameter_specs(const MambaConfig& cfg);

// The number of parameter elements of MambaLM(cfg) (lm_head tied: counted once): the sum over
// parameter_specs(cfg). 129,135,360 for "130m"; + 4,755,456 with global selection (k_long 128)
// in all 24 layers.
int64_t count_parameters(const MambaConfig& cfg);

std::string_view init_scheme_name(InitScheme s);
std::string_view causal_conv_mode_name(CausalConvMode m);
std::string_view gate_function_name(GateFunction g);
std::string_view gate_input_name(GateInput g);

} // namespace mg::nn
