// train/probe.h: look inside a model on one training batch: the loss, every parameter's gradient
// and what each mixer computed (nn::MixerTrace), summarised per layer. `mambagrad probe` prints
// it and can write it to a safetensors file that tools/torch_reference.py checks against an
// independent PyTorch float64 implementation of the same model (docs/global_selection.md).
//
// The batch: the task's train split (the config's seeds), the first `batch` examples of length
// seq_len (0: the longest length of the grid), in generation order; the loss is the trainer's:
// the mean cross-entropy over the labelled positions (cross_entropy_indexed).
//
// The file (save_probe) holds
//   batch.inputs (B, L) i32, batch.positions (P) i32, batch.targets (P) i32
//   loss ()                      in the probe's dtype
//   grad.<parameter name>        every parameter's gradient, its shape
//   param.<parameter name>       every parameter (in the probe's dtype)
// and in __metadata__ "mambagrad.config" (the run's config JSON, as checkpoints).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/mamba.h"
#include "train/trainer.h"

namespace mg::train {

struct ProbeOptions {
    int64_t batch = 4;
    int64_t seq_len = 0; // 0: the grid's longest L
    DType dtype = DType::f32;
};

// Statistics of one tensor's elements (over every element, in double).
struct TensorStats {
    double min = 0, max = 0, mean = 0, abs_mean = 0, p99_abs = 0; // p99_abs: 99th percentile of |x|
};
TensorStats tensor_stats(const Tensor& t);

struct LayerProbe {
    TensorStats dt, delta;  // dt before the bias (gated where there is a gate); Δ
    TensorStats gate;       // f(long_conv(x)), f = sigmoid or silu; all zero without global selection
    double out_rms = 0;     // root mean square of the mixer's output (what it adds to the residual)
    bool has_gate = false;
    // exp(Δ A_n) for the slowest state (n = argmin |A_n| per channel): the share of (b, t, d)
    // where it is below 1e-3 (the state forgets everything within one step) and above 0.999 (it
    // barely moves).
    double slow_decay_below_1e3 = 0, slow_decay_above_0999 = 0;
};

struct ProbeResult {
    double loss = 0;
    int64_t batch = 0, seq_len = 0, labelled = 0;
    data::MqarBatch data;                       // on the model's device
    NamedTensors grads;                         // (name, gradient), named_parameters() order
    NamedTensors params;                        // (name, parameter), the same order
    std::vector<std::pair<std::string, double>> grad_norms; // L2 norm of each
    std::vector<LayerProbe> layers;
};

// Runs one forward and backward of `model` (converted to opts.dtype in place) on the batch
// described above. Throws mg::Error when the grid has no cell of length seq_len or too few
// examples.
ProbeResult probe_model(nn::MambaLM& model, const TrainConfig& cfg, const ProbeOptions& opts);

// The human-readable report: the loss, the per-parameter gradient norms (grouped by name across
// layers: "layers.*.mixer.dt_proj.weight" with its per-layer values) and the per-layer table.
std::string format_probe(const ProbeResult& r);

// Writes the file described at the top (atomically).
void save_probe(const std::string& path, const ProbeResult& r, const TrainConfig& cfg);

} // namespace mg::train
