// train/optim.h: AdamW with decoupled weight decay (SPEC §5), over a list of named parameters.
//
// Shapes: each parameter p (any shape, contiguous) has a gradient p.grad() of p's shape, dtype and
// device, and two state tensors of p's shape: exp_avg m and exp_avg_sq v. One step t (t counts
// the steps THIS parameter has taken, from 1):
//   m = b1 m + (1-b1) g
//   v = b2 v + (1-b2) g^2
//   Transformers (default; transformers.AdamW, the paper's optimizer):
//     p -= lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps);   p -= lr wd p
//   Torch (torch.optim.AdamW):
//     p -= lr wd p;   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// wd is 0 for parameters the no_decay predicate selects. A parameter whose gradient is undefined
// at a step is skipped (its state and t unchanged), as in PyTorch.
//
// Deterministic: one fused elementwise kernel per parameter (CPU and CUDA), no reductions.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/optim.h"
#include "tensor/tensor.h"

namespace mg::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// true: the parameter of this name gets no weight decay.
using NamePredicate = std::function<bool(const std::string&)>;

struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9, beta2 = 0.95; // SPEC §5
    double eps = 1e-6;                // transformers.AdamW's default, which the paper used
    double weight_decay = 0.1;
    AdamWStyle style = AdamWStyle::Transformers;
    // Empty: decay every parameter (the paper's code). mamba_ssm_no_decay: mamba_ssm's exclusions.
    NamePredicate no_decay;
    // A parameter's learning-rate multiplier (empty: 1 for all). Its step and its decay both use
    // lr * scale; scale 0 freezes it. The trainer builds it from the config's lr_scale.
    std::function<double(const std::string&)> lr_scale;
};

// mamba_ssm's `_no_weight_decay` parameters: A_log and D (a name whose last component is one).
bool mamba_ssm_no_decay(const std::string& name);

std::string_view adamw_style_name(AdamWStyle s); // "transformers" | "torch"
AdamWStyle parse_adamw_style(std::string_view s);

class AdamW {
public:
    // Parameters must be defined, floating, contiguous, with unique names. State starts at zero
    // (allocated now, like each parameter: same dtype and device).
    explicit AdamW(NamedTensors params, AdamWOptions options = {});

    // One step over every parameter with a defined gradient. Runs without recording a graph.
    // skip_words: device tensors (FiniteProbe::skip_words()); the kernels for a device with one
    // leave everything unchanged when its first 64-bit word is non-zero at run time (the step
    // counts still advance: a run that sees it stops).
    void step(const std::vector<Tensor>& skip_words = {});
    // Sets every parameter's gradient to undefined.
    void zero_grad();

    void set_lr(double lr) { options_.lr = lr; }
    double lr() const { return options_.lr; }
    const AdamWOptions& options() const { return options_; }
    const NamedTensors& params() const { return params_; }
    // Steps taken by parameter i (its t).
    int64_t step_count(size_t i) const { return steps_.at(i); }
    bool decays(size_t i) const { return decay_.at(i); }
    double lr_scale(size_t i) const { return scale_.at(i); }

    // ---- state for checkpoints ----------------------------------------------------------------
    // "optimizer.exp_avg.<name>" and "optimizer.exp_avg_sq.<name>" (aliases of the live state).
    NamedTensors state_tensors() const;
    // JSON text: {"type":"adamw","style":..,"lr":..,"betas":[..],"eps":..,"weight_decay":..,
    // "steps":{"<name>":t,..}}.
    std::string state_json() const;
    // Restores exp_avg/exp_avg_sq (copied into the live state; shapes must match, dtypes are
    // converted) and every step count, and lr, from what state_tensors()/state_json() gave.
    // Throws mg::Error naming a missing, unexpected or mismatched entry.
    void load_state(const std::map<std::string, Tensor>& tensors, const std::string& json);

private:
    NamedTensors params_;
    AdamWOptions options_;
    std::vector<Tensor> exp_avg_, exp_avg_sq_;
    std::vector<int64_t> steps_;
    std::vector<bool> decay_;
    std::vector<double> scale_; // lr multipliers
};

// The step's coefficients for a parameter at its step t >= 1.
AdamWCoef adamw_coef(const AdamWOptions& o, int64_t t, bool decay, double lr_scale = 1.0);

// ---- the reference (the kernels are ops/multi_tensor.h's adamw_step_) ---------------------------
// The reference: `steps` consecutive steps in double from the same AdamWOptions, gradients
// grads[s] (each n values) at step s; t starts at t0 + 1. p, m, v updated in place.
void adamw_ref(std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
               const std::vector<std::vector<double>>& grads, const AdamWOptions& o, bool decay, int64_t t0 = 0);

} // namespace mg::train
