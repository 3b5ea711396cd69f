// common/reduce.h: the row reductions' one plain type, shared by the CPU kernels (ops/reduce.cpp)
// and the CUDA kernels (cuda/reduce.cu, and the FFT conv's bias gradient).
#pragma once

namespace mg {

// out[o] = sum_k x[o, k]; mean: that over the row length; max: the row's maximum (and its first index).
enum class ReduceOp : int { sum, mean, max };

} // namespace mg
