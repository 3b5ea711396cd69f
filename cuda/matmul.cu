// cuda/matmul.cu: GEMM through cuBLAS.
//
// cuBLAS is column-major. A row-major (r, c) matrix with row stride ld is, read column-major,
// its transpose (c, r) with leading dimension ld. So row-major C = op(A) op(B) is computed as
// column-major C^T = op(B)^T op(A)^T: swap the operands and pass (N, M, K). The fp32 path uses
// cuBLAS's default math mode: true fp32, no TF32, so results match the CPU to fp32 rounding;
// with g.tf32 (ops/matmul.h MatmulPrecision::tf32) it asks for CUBLAS_COMPUTE_32F_FAST_TF32 per
// call: the same f32 operands and result, multiplied on tensor cores in TF32. gemm_bf16 (bf16 A
// and B, f32 C, fp32 accumulation) is the same call with CUDA_R_16BF operands; GemmEx needs no
// alignment of pointers or leading dimensions (unaligned ones only get slower kernels), just
// ld >= the stored row length, which GemmArgs already means.
#include <cublas_v2.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "cuda/check.h"
#include "cuda/matmul.h"
#include "cuda/runtime.h"

namespace mg::cuda {

static cublasHandle_t handle_for(int device) {
    static std::mutex mu;
    static std::vector<cublasHandle_t> handles;
    std::lock_guard<std::mutex> lock(mu);
    if (handles.empty()) handles.resize(size_t(device_count()), nullptr);
    cublasHandle_t& h = handles.at(size_t(device));
    if (!h) CUBLAS_CHECK(cublasCreate(&h));
    return h;
}

namespace {
// GemmArgs in cuBLAS's terms (the operands are swapped by the caller: see the top of the file).
struct CublasGeometry {
    cublasOperation_t opA, opB;
    int M, N, K, lda, ldb, ldc;
    explicit CublasGeometry(const GemmArgs& g)
        : opA(g.ta ? CUBLAS_OP_T : CUBLAS_OP_N), opB(g.tb ? CUBLAS_OP_T : CUBLAS_OP_N),
          // cuBLAS takes int sizes; ops/matmul.cpp checks they fit.
          M(int(g.M)), N(int(g.N)), K(int(g.K)),
          // Leading dimensions must be >= 1 even when an operand is empty (K = 0).
          lda(int(std::max<int64_t>(g.lda, 1))), ldb(int(std::max<int64_t>(g.ldb, 1))), ldc(int(g.ldc)) {}
};
} // namespace

template <typename T>
void gemm(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C, int device) {
    if (g.M == 0 || g.N == 0 || g.batch == 0) return;
    cublasHandle_t h = handle_for(device);
    const auto [opA, opB, M, N, K, lda, ldb, ldc] = CublasGeometry(g);
    if constexpr (std::is_same_v<T, float>) {
        if (g.tf32) {
            CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, g.stride_b, A,
                                                    CUDA_R_32F, lda, g.stride_a, &beta, C, CUDA_R_32F, ldc, g.stride_c,
                                                    int(g.batch), CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
            return;
        }
        CUBLAS_CHECK(cublasSgemmStridedBatched(h, opB, opA, N, M, K, &alpha, B, ldb, g.stride_b, A, lda,
                                               g.stride_a, &beta, C, ldc, g.stride_c, int(g.batch)));
    } else {
        CUBLAS_CHECK(cublasDgemmStridedBatched(h, opB, opA, N, M, K, &alpha, B, ldb, g.stride_b, A, lda,
                                               g.stride_a, &beta, C, ldc, g.stride_c, int(g.batch)));
    }
}

void gemm_bf16(const GemmArgs& g, float alpha, const bf16* A, const bf16* B, float beta, float* C, int device) {
    if (g.M == 0 || g.N == 0 || g.batch == 0) return;
    cublasHandle_t h = handle_for(device);
    const auto [opA, opB, M, N, K, lda, ldb, ldc] = CublasGeometry(g);
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opB, opA, N, M, K, &alpha, B, CUDA_R_16BF, ldb, g.stride_b, A, CUDA_R_16BF,
                                            lda, g.stride_a, &beta, C, CUDA_R_32F, ldc, g.stride_c, int(g.batch),
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

template void gemm<float>(const GemmArgs&, float, const float*, const float*, float, float*, int);
template void gemm<double>(const GemmArgs&, double, const double*, const double*, double, double*, int);

} // namespace mg::cuda
