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

#include "tensor/tensor.h"

namespace mg {

Tensor matmul(const Tensor& a, const Tensor& b);

// ---- kernels --------------------------------------------------------------------------------
// Row-major GEMM over `batch` matrices: C = alpha op(A) op(B) + beta C, with op(A) (M,K),
// op(B) (K,N), C (M,N). A is stored (M,K) with row stride lda, or (K,M) when ta; likewise B.
// Writes C (beta = 0: C is not read, so it may hold garbage).
struct GemmArgs {
    bool ta = false, tb = false;
    int64_t M = 0, N = 0, K = 0;
    int64_t lda = 0, ldb = 0, ldc = 0;
    int64_t stride_a = 0, stride_b = 0, stride_c = 0; // between batch matrices
    int64_t batch = 1;
};
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
