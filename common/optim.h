// common/optim.h: the per-element AdamW and clipping math, written once and compiled for the CPU
// loops (ops/multi_tensor.cpp) and the CUDA kernels (cuda/optim.cu). No fmt here.
#pragma once
#include <cmath>
#include <cstdint>

#include "tensor/indexing.h"

namespace mg {

// Where eps and the bias corrections enter (both decoupled-weight-decay AdamW):
//   Transformers  transformers.AdamW (the paper's optimizer, SPEC §5):
//                 p -= lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps);  then p -= lr wd p
//   Torch         torch.optim.AdamW:
//                 p -= lr wd p;  then p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
enum class AdamWStyle : int { Transformers, Torch };

// One step's coefficients, computed in double on the host from (lr, betas, eps, wd, t).
struct AdamWCoef {
    double beta1 = 0.9, beta2 = 0.95;
    double eps = 1e-6;
    double step_size = 0; // Transformers: lr sqrt(bc2)/bc1;  Torch: lr/bc1
    double bc2_sqrt = 1;  // sqrt(1 - b2^t) (Torch style divides sqrt(v) by it)
    double decay = 0;     // lr * weight_decay (0: no decay for this tensor)
    AdamWStyle style = AdamWStyle::Transformers;
};

// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  then the style's update of p (see above).
// Arithmetic in T (fp32 for f32 tensors), coefficients rounded to T once.
template <typename T> MG_HD void adamw_update(T& p, T& m, T& v, T g, const AdamWCoef& c) {
    using std::sqrt;
    const T b1 = T(c.beta1), b2 = T(c.beta2), eps = T(c.eps), step = T(c.step_size), decay = T(c.decay);
    m = b1 * m + (T(1) - b1) * g;
    v = b2 * v + (T(1) - b2) * g * g;
    if (c.style == AdamWStyle::Transformers) {
        p = p - step * m / (sqrt(v) + eps);
        p = p - decay * p;
    } else {
        p = p - decay * p;
        p = p - step * m / (sqrt(v) / T(c.bc2_sqrt) + eps);
    }
}

// clamp to [-c, c]; NaN stays NaN (so the NaN guard still sees it).
template <typename T> MG_HD T clip_value_apply(T x, T c) {
    return x > c ? c : x < -c ? -c : x;
}

} // namespace mg
