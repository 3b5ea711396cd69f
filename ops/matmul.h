// ops/matmul.h: batched matrix multiply.
//
// Shapes: a (..., M, K) @ b (..., K, N) -> (..., M, N); leading (batch) dims broadcast, and a 2-D
// b is shared by every batch (the linear-layer case, computed as one (batch*M, K) @ (K, N) GEMM).
// GPU: cuBLAS. CPU: OpenBLAS when the build found it, else our cache-blocked kernel; the naive
// triple loop (gemm_ref, in double) is the oracle both are tested against.
//
// Derivatives (g = dL/dy):   da = sum_to(g @ b^T, a.shape)     db = sum_to(a^T @ g, b.shape)
#pragma once
#include <cstdint>

#include "common/matmul.h"
#include "tensor/tensor.h"

namespace mg {

Tensor matmul(const Tensor& a, const Tensor& b);

// ---- kernels --------------------------------------------------------------------------------
// GEMM in the geometry of GemmArgs (common/matmul.h). Writes C (beta = 0: C is not read, so it
// may hold garbage).
template <typename T> void gemm_cpu(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C);
template <typename T> void gemm_blocked(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C);
// The reference: three loops in double, C = alpha op(A) op(B) + beta C.
template <typename T> void gemm_ref(const GemmArgs& g, double alpha, const T* A, const T* B, double beta, double* C);
bool gemm_cpu_uses_openblas();
// The device dispatch of the above on tensors: C = alpha op(A) op(B) + beta C with gemm_cpu or
// cuBLAS on A's device. A, B, C contiguous, same dtype and device, geometry in g. For composite
// ops (linear) that need a transposed operand or beta = 1 without a copy.
void gemm_tensors(const GemmArgs& g, double alpha, const Tensor& A, const Tensor& B, double beta, const Tensor& C);

} // namespace mg
