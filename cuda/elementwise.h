// cuda/elementwise.h: CUDA launchers for ops/elementwise.h (same arguments as the CPU kernels).
#pragma once
#include <cstdint>

#include "common/elementwise.h"

namespace mg::cuda {

template <typename T>
void binary_forward(T* out, const T* a, const StridedIndexer& ia, const T* b,
                    const StridedIndexer& ib, int64_t n, BinaryOp op, bool contiguous);
template <typename T> void unary_forward(T* out, const T* x, int64_t n, UnaryOp op, T p);
template <typename T>
void unary_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, UnaryOp op, T p);

} // namespace mg::cuda
