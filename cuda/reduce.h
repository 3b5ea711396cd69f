// cuda/reduce.h: CUDA launchers for ops/reduce.h (same arguments as the CPU kernels).
#pragma once
#include <cstdint>

#include "common/reduce.h"

namespace mg::cuda {

template <typename T>
void reduce_rows(T* out, int32_t* argmax, const T* x, int64_t outer, int64_t inner, ReduceOp op);
template <typename T>
void max_rows_backward(T* dx, const T* dout, const int32_t* argmax, int64_t outer, int64_t inner);

} // namespace mg::cuda
