// cuda/matmul.h: cuBLAS strided-batched GEMM with the row-major GemmArgs of ops/matmul.h.
#pragma once
#include "common/matmul.h"

namespace mg::cuda {
template <typename T> void gemm(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C, int device);
} // namespace mg::cuda
