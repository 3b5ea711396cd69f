// common/matmul.h: the GEMM geometry, shared by the CPU kernels (ops/matmul.cpp) and the cuBLAS
// launcher (cuda/matmul.cu).
#pragma once
#include <cstdint>

namespace mg {

// Row-major GEMM over `batch` matrices: C = alpha op(A) op(B) + beta C, with op(A) (M,K),
// op(B) (K,N), C (M,N). A is stored (M,K) with row stride lda, or (K,M) when ta; likewise B.
struct GemmArgs {
    bool ta = false, tb = false;
    int64_t M = 0, N = 0, K = 0;
    int64_t lda = 0, ldb = 0, ldc = 0;
    int64_t stride_a = 0, stride_b = 0, stride_c = 0; // between batch matrices
    int64_t batch = 1;
    // f32 on the GPU only: tensor cores with inputs rounded to TF32 (10-bit mantissa) and fp32
    // accumulation (ops/matmul.h, MatmulPrecision). Ignored for f64 and on the CPU.
    bool tf32 = false;
};

} // namespace mg
