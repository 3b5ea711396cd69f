// cuda/optim.h: CUDA launchers for the optimizer, clipping and NaN-guard kernels of train/optim.h,
// train/clip.h and train/guard.h. Each takes a list of tensors (one slot per tensor, all on the
// current device) and covers them in as few launches as cuda/multi_tensor.h allows: the per-step
// cost of these phases is then a handful of launches, not one per parameter.
#pragma once
#include <cstdint>
#include <vector>

#include "common/optim.h"

namespace mg::cuda {

// One AdamW step (common/optim.h) on p, m, v in place, n elements each, contiguous. With
// `skip` (a device word) non-zero when the kernels run, nothing changes: the trainer passes the
// NaN/Inf probe's "any" word, so a step whose gradients are not finite never reaches the
// parameters, although the host learns of it only later.
template <typename T> struct AdamWSlot {
    T *p, *m, *v;
    const T* g;
    int64_t n;
    AdamWCoef c;
};
template <typename T> void adamw_step(const std::vector<AdamWSlot<T>>& slots, const unsigned long long* skip = nullptr);

// x[i] = clamp(x[i], -c, c) in place, n elements, contiguous.
template <typename T> struct TensorSlot {
    T* x;
    int64_t n;
};
template <typename T> void clip_value(const std::vector<TensorSlot<T>>& slots, T c);

// The NaN/Inf probe over `count` tensors, into the device words (unsigned 64-bit)
//   words[0]              "any": 1 when some slot holds a non-finite value, else 0
//   words[1 + k]          slot k's number of non-finite values
//   words[1 + count + k]  slot k's first one: min over them of (flat index << 2 | kind), kind
//                         1 NaN, 2 +Inf, 3 -Inf; all ones when there is none
// probe_init() sets the words to "nothing seen" (two memsets); nonfinite_probe() adds slots'
// findings (integer atomics: add and min, so the result does not depend on the order).
inline constexpr int kProbeNan = 1, kProbePosInf = 2, kProbeNegInf = 3;
template <typename T> struct ProbeSlot {
    const T* x;
    int64_t n;
    unsigned long long *count, *first, *any;
};
void probe_init(unsigned long long* words, int64_t count);
template <typename T> void nonfinite_probe(const std::vector<ProbeSlot<T>>& slots);

} // namespace mg::cuda
