// cuda/activation.h: CUDA launchers for ops/activation.h (same arguments as the CPU kernels).
#pragma once
#include <cstdint>

#include "common/activation.h"

namespace mg::cuda {

// out[i] = act(x[i]). Writes (=).
template <typename T> void activation_forward(T* out, const T* x, int64_t n, Activation act);
// dx[i] = dy[i] act'(x[i]). Writes (=).
template <typename T> void activation_backward(T* dx, const T* dy, const T* x, int64_t n, Activation act);
// out[i] = keep(i) ? x[i] scale : 0, keep(i) = dropout_keep(seed, offset, i, p). Writes (=).
template <typename T>
void dropout(T* out, const T* x, int64_t n, double p, T scale, uint64_t seed, uint64_t offset);

} // namespace mg::cuda
