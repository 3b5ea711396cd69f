// cuda/optim.h: CUDA launchers for the optimizer, clipping and NaN-guard kernels of train/optim.h,
// train/clip.h and train/guard.h. Each takes a list of tensors (one slot per tensor, all on the
// current device) and covers them in as few launches as cuda/multi_tensor.h allows: the per-step
// cost of these phases is then a handful of launches, not one per parameter.
#pragma once
#include <cstdint>
#include <vector>

#include "train/optim_math.h"

namespace mg::cuda {

// One AdamW step (train/optim_math.h) on p, m, v in place, n elements each, contiguous.
template <typename T> struct AdamWSlot {
    T *p, *m, *v;
    const T* g;
    int64_t n;
    train::AdamWCoef c;
};
template <typename T> void adamw_step(const std::vector<AdamWSlot<T>>& slots);

// x[i] = clamp(x[i], -c, c) in place, n elements, contiguous.
template <typename T> struct TensorSlot {
    T* x;
    int64_t n;
};
template <typename T> void clip_value(const std::vector<TensorSlot<T>>& slots, T c);

// flags[k] (device ints, zeroed by the caller) becomes 1 when slot k holds a NaN or Inf.
template <typename T> struct FlagSlot {
    const T* x;
    int64_t n;
    int* flag;
};
template <typename T> void nonfinite_flags(const std::vector<FlagSlot<T>>& slots);

} // namespace mg::cuda
