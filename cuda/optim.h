// cuda/optim.h: CUDA launchers for the optimizer and clipping kernels of train/optim.h and
// train/clip.h (same arguments as the CPU kernels there).
#pragma once
#include <cstdint>

#include "train/optim_math.h"

namespace mg::cuda {

// p, m, v updated in place (n elements, contiguous) by one AdamW step (train/optim_math.h).
template <typename T> void adamw_step(T* p, T* m, T* v, const T* g, int64_t n, const train::AdamWCoef& c);
// x[i] = clamp(x[i], -c, c) in place.
template <typename T> void clip_value(T* x, int64_t n, T c);

} // namespace mg::cuda
