// cuda/matmul.h: cuBLAS strided-batched GEMM with the row-major GemmArgs of ops/matmul.h.
#pragma once
#include "common/bf16.h"
#include "common/matmul.h"

namespace mg::cuda {
template <typename T> void gemm(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C, int device);
// bf16 A and B, fp32 accumulation, f32 C (C = alpha op(A) op(B) + beta C): cublasGemmStridedBatchedEx
// with CUDA_R_16BF inputs, a CUDA_R_32F output and CUBLAS_COMPUTE_32F. g.tf32 is ignored.
void gemm_bf16(const GemmArgs& g, float alpha, const bf16* A, const bf16* B, float beta, float* C, int device);
} // namespace mg::cuda
