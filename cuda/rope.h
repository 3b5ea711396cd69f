// cuda/rope.h: CUDA launcher for ops/rope.h (same arguments as rope_cpu).
#pragma once
#include <cstdint>

namespace mg::cuda {

// out = R(sign * a) x over N rows of L positions of Dh values. Writes (=).
template <typename T>
void rope(T* out, const T* x, int64_t N, int64_t L, int64_t Dh, int64_t rotary_dims, double base, int64_t pos_offset,
          double sign);

} // namespace mg::cuda
