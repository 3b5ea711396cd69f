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

// ---- bf16 inputs, fp32 accumulation --------------------------------------------------------
// matmul_bf16(a, b): a (..., M, K) bf16 @ b (..., K, N) bf16 -> (..., M, N) f32, with matmul's
// shapes and broadcasting. Every product of two bf16 values is exact in fp32 and the sums are
// accumulated in fp32, so the result is the fp32 GEMM of the bf16 values (the only error is
// fp32 accumulation's). The form autocast uses: bf16 storage and traffic, fp32 math and output.
// GPU: cublasGemmStridedBatchedEx (CUDA_R_16BF inputs, CUDA_R_32F output, CUBLAS_COMPUTE_32F),
// on tensor cores. CPU: the operands widened to f32 (exactly) and the f32 GEMM above.
// Not differentiable: bf16 tensors cannot require grad (tensor/dtype.h), so there is nothing to
// record; autocast's backward (dA = dC B^T, dB = A^T dC, in bf16 or f32) comes with autocast.
// Throws naming both tensors when either is not bf16, the devices differ or the shapes do not
// chain.
Tensor matmul_bf16(const Tensor& a, const Tensor& b);

// ---- precision of f32 matmuls on the GPU -----------------------------------------------------
// fp32 (the default and the reference): true fp32, results match the CPU to fp32 rounding.
// tf32: cuBLAS on tensor cores, each input rounded to TF32 (8-bit exponent, 10-bit mantissa:
// relative error up to 2^-11 per element) and accumulated in fp32, several times the fp32 rate on
// an H100 (bench/RESULTS.md). f64 matmuls and the CPU are unaffected; so is every other op.
// Process-wide, like torch.backends.cuda.matmul.allow_tf32; the trainer sets it from
// `precision` (train/config.h). Every GEMM (matmul, linear and their backwards) reads it.
enum class MatmulPrecision { fp32, tf32 };
void set_matmul_precision(MatmulPrecision p);
MatmulPrecision matmul_precision();
// Sets it for a scope and restores the previous value on leaving it (exceptions included).
class ScopedMatmulPrecision {
public:
    explicit ScopedMatmulPrecision(MatmulPrecision p) : saved_(matmul_precision()) { set_matmul_precision(p); }
    ~ScopedMatmulPrecision() { set_matmul_precision(saved_); }
    ScopedMatmulPrecision(const ScopedMatmulPrecision&) = delete;
    ScopedMatmulPrecision& operator=(const ScopedMatmulPrecision&) = delete;

private:
    MatmulPrecision saved_;
};

// ---- kernels --------------------------------------------------------------------------------
// GEMM in the geometry of GemmArgs (common/matmul.h). Writes C (beta = 0: C is not read, so it
// may hold garbage).
template <typename T> void gemm_cpu(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C);
template <typename T> void gemm_blocked(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C);
// The reference: three loops in double, C = alpha op(A) op(B) + beta C.
template <typename T> void gemm_ref(const GemmArgs& g, double alpha, const T* A, const T* B, double beta, double* C);
bool gemm_cpu_uses_openblas();
// The device dispatch of the above on tensors: C = alpha op(A) op(B) + beta C with gemm_cpu or
// cuBLAS on A's device. A, B, C on one device, their data laid out as g says; one dtype (f32 or
// f64), or bf16 A and B with an f32 C (matmul_bf16's GEMM). For composite ops (linear) that need
// a transposed operand or beta = 1 without a copy.
void gemm_tensors(const GemmArgs& g, double alpha, const Tensor& A, const Tensor& B, double beta, const Tensor& C);

} // namespace mg
