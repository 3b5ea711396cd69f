// ops/matmul.cpp: see ops/matmul.h.
#include "ops/matmul.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

#include <omp.h>

#ifdef MG_OPENBLAS
#include <cblas.h>
#endif

#include "autograd/node.h"
#include "cuda/matmul.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"
#include "ops/reduce.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
namespace {
template <typename T> T a_at(const GemmArgs& g, const T* A, int64_t i, int64_t k) {
    return g.ta ? A[k * g.lda + i] : A[i * g.lda + k];
}
template <typename T> T b_at(const GemmArgs& g, const T* B, int64_t k, int64_t j) {
    return g.tb ? B[j * g.ldb + k] : B[k * g.ldb + j];
}
} // namespace

template <typename T>
void gemm_ref(const GemmArgs& g, double alpha, const T* A, const T* B, double beta, double* C) {
    for (int64_t b = 0; b < g.batch; ++b)
        for (int64_t i = 0; i < g.M; ++i)
            for (int64_t j = 0; j < g.N; ++j) {
                double acc = 0;
                for (int64_t k = 0; k < g.K; ++k)
                    acc += double(a_at(g, A + b * g.stride_a, i, k)) * double(b_at(g, B + b * g.stride_b, k, j));
                double& c = C[b * g.stride_c + i * g.ldc + j];
                c = alpha * acc + (beta == 0 ? 0.0 : beta * c);
            }
}

// Cache-blocked GEMM. For each (kc x nc) panel of op(B), copied once into a contiguous buffer
// (so the transposed case reads it with unit stride too), every row of an (mc) block of op(A)
// is multiplied into C with an i-k-j loop whose inner loop the compiler vectorises. Blocks of
// rows run in parallel (OpenMP); each thread owns its rows of C, so no two threads write the
// same element and the result does not depend on the thread count.
template <typename T>
void gemm_blocked(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C) {
    constexpr int64_t MC = 64, KC = 256, NC = 512;
    for (int64_t b = 0; b < g.batch; ++b) {
        const T* Ab = A + b * g.stride_a;
        const T* Bb = B + b * g.stride_b;
        T* Cb = C + b * g.stride_c;
        for (int64_t i = 0; i < g.M; ++i)
            for (int64_t j = 0; j < g.N; ++j)
                Cb[i * g.ldc + j] = beta == T(0) ? T(0) : beta * Cb[i * g.ldc + j];
        for (int64_t j0 = 0; j0 < g.N; j0 += NC) {
            int64_t nc = std::min(NC, g.N - j0);
            for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
                int64_t kc = std::min(KC, g.K - k0);
                std::vector<T> panel(size_t(kc * nc)); // op(B)[k0:k0+kc, j0:j0+nc], row-major
                for (int64_t k = 0; k < kc; ++k)
                    for (int64_t j = 0; j < nc; ++j) panel[size_t(k * nc + j)] = b_at(g, Bb, k0 + k, j0 + j);
#pragma omp parallel for schedule(static) if (g.M * nc * kc > kParallelGrain)
                for (int64_t i0 = 0; i0 < g.M; i0 += MC) {
                    int64_t mc = std::min(MC, g.M - i0);
                    for (int64_t i = i0; i < i0 + mc; ++i) {
                        T* crow = Cb + i * g.ldc + j0;
                        for (int64_t k = 0; k < kc; ++k) {
                            T a = alpha * a_at(g, Ab, i, k0 + k);
                            const T* prow = panel.data() + k * nc;
                            for (int64_t j = 0; j < nc; ++j) crow[j] += a * prow[j];
                        }
                    }
                }
            }
        }
    }
}

bool gemm_cpu_uses_openblas() {
#ifdef MG_OPENBLAS
    return true;
#else
    return false;
#endif
}

#ifdef MG_OPENBLAS
namespace {

// OpenBLAS runs single-threaded, and the parallelism is ours: C is cut into one part per OpenMP
// thread. OpenBLAS's own pthread pool busy-waits with sched_yield after every call; on a 2-core
// machine it fought the OpenMP threads of the kernels around each GEMM, and perf put 30% of a CPU
// training step in the scheduler (bench/RESULTS.md).
void openblas_single_threaded() {
    static const bool once = [] {
        openblas_set_num_threads(1);
        return true;
    }();
    (void)once;
}

template <typename T>
void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int lda, const T* B, int ldb,
               T beta, T* C, int ldc) {
    auto cta = ta ? CblasTrans : CblasNoTrans, ctb = tb ? CblasTrans : CblasNoTrans;
    if constexpr (std::is_same_v<T, float>)
        cblas_sgemm(CblasRowMajor, cta, ctb, int(M), int(N), int(K), alpha, A, lda, B, ldb, beta, C, ldc);
    else
        cblas_dgemm(CblasRowMajor, cta, ctb, int(M), int(N), int(K), alpha, A, lda, B, ldb, beta, C, ldc);
}

constexpr int64_t kGemmGrain = int64_t(1) << 20; // multiply-adds below which one thread does it all

} // namespace
#endif

template <typename T> void gemm_cpu(const GemmArgs& g, T alpha, const T* A, const T* B, T beta, T* C) {
#ifdef MG_OPENBLAS
    bool fits = std::max({g.M, g.N, g.K, g.lda, g.ldb, g.ldc}) <= std::numeric_limits<int>::max();
    if (fits && g.M > 0 && g.N > 0) {
        openblas_single_threaded();
        // the longer of C's two dims is cut into parts; each part is one BLAS call over all of K
        const bool by_rows = g.M >= g.N;
        const int64_t len = by_rows ? g.M : g.N;
        const int parts = g.M * g.N * std::max<int64_t>(g.K, 1) >= kGemmGrain
                              ? int(std::min<int64_t>(omp_get_max_threads(), len)) : 1;
        // BLAS requires ld >= 1 even for empty operands.
        const int lda = int(std::max<int64_t>(g.lda, 1)), ldb = int(std::max<int64_t>(g.ldb, 1)), ldc = int(g.ldc);
        for (int64_t b = 0; b < g.batch; ++b) {
            const T* Ab = A + b * g.stride_a;
            const T* Bb = B + b * g.stride_b;
            T* Cb = C + b * g.stride_c;
#pragma omp parallel for schedule(static) num_threads(parts) if (parts > 1)
            for (int p = 0; p < parts; ++p) {
                const int64_t lo = len * p / parts, hi = len * (p + 1) / parts;
                if (by_rows) // rows lo..hi of op(A) and of C
                    blas_gemm(g.ta, g.tb, hi - lo, g.N, g.K, alpha, Ab + (g.ta ? lo : lo * g.lda), lda, Bb, ldb, beta,
                              Cb + lo * g.ldc, ldc);
                else // columns lo..hi of op(B) and of C
                    blas_gemm(g.ta, g.tb, g.M, hi - lo, g.K, alpha, Ab, lda, Bb + (g.tb ? lo * g.ldb : lo), ldb, beta,
                              Cb + lo, ldc);
            }
        }
        return;
    }
#endif
    gemm_blocked(g, alpha, A, B, beta, C);
}

namespace {
std::atomic<MatmulPrecision> g_matmul_precision{MatmulPrecision::fp32};
} // namespace

void set_matmul_precision(MatmulPrecision p) { g_matmul_precision.store(p); }
MatmulPrecision matmul_precision() { return g_matmul_precision.load(); }

namespace {

// Elements of a stored operand (batch matrices of rows x cols at row stride ld, `stride` apart)
// that a GEMM reads: from the first to one past the last.
int64_t operand_extent(const GemmArgs& g, int64_t stride, int64_t rows, int64_t cols, int64_t ld) {
    if (g.batch == 0 || rows == 0 || cols == 0) return 0;
    return (g.batch - 1) * stride + (rows - 1) * ld + cols;
}

std::vector<float> widen_bf16(const bf16* p, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = float(p[i]);
    return out;
}

// bf16 A and B, f32 C. The CPU widens the operands to f32 (exactly) and runs the f32 GEMM: bf16
// storage, fp32 compute, as cuBLAS does on the GPU.
void gemm_bf16_tensors(const GemmArgs& g, double alpha, const Tensor& A, const Tensor& B, double beta, const Tensor& C) {
    if (A.device().is_cpu()) {
        const std::vector<float> a = widen_bf16(A.data<bf16>(), operand_extent(g, g.stride_a, g.ta ? g.K : g.M, g.ta ? g.M : g.K, g.lda));
        const std::vector<float> b = widen_bf16(B.data<bf16>(), operand_extent(g, g.stride_b, g.tb ? g.N : g.K, g.tb ? g.K : g.N, g.ldb));
        gemm_cpu<float>(g, float(alpha), a.data(), b.data(), float(beta), C.data<float>());
    } else {
        MG_CUDA_ONLY(cuda::DeviceGuard guard(A.device().index);
                     cuda::gemm_bf16(g, float(alpha), A.data<bf16>(), B.data<bf16>(), float(beta), C.data<float>(),
                                     A.device().index));
    }
}

} // namespace

void gemm_tensors(const GemmArgs& g, double alpha, const Tensor& A, const Tensor& B, double beta, const Tensor& C) {
    const bool bf16_in = A.dtype() == DType::bf16;
    MG_CHECK(A.device() == B.device() && A.device() == C.device() &&
                 (bf16_in ? B.dtype() == DType::bf16 && C.dtype() == DType::f32
                          : B.dtype() == A.dtype() && C.dtype() == A.dtype()),
             "gemm: A is {}, B is {} and C is {}; expected one device, and one dtype for all three or bf16 A "
             "and B with an f32 C", A.desc(), B.desc(), C.desc());
    if (bf16_in) return gemm_bf16_tensors(g, alpha, A, B, beta, C);
    dispatch_float(A.dtype(), "matmul", [&]<typename T>() {
        if (A.device().is_cpu()) {
            gemm_cpu<T>(g, T(alpha), A.data<T>(), B.data<T>(), T(beta), C.data<T>());
        } else {
            GemmArgs dg = g;
            dg.tf32 = std::is_same_v<T, float> && matmul_precision() == MatmulPrecision::tf32;
            MG_CUDA_ONLY(cuda::DeviceGuard guard(A.device().index);
                         cuda::gemm<T>(dg, T(alpha), A.data<T>(), B.data<T>(), T(beta), C.data<T>(), A.device().index));
        }
    });
}

// ---- the op ---------------------------------------------------------------------------------
namespace {

Shape batch_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

void run_gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& out) {
    gemm_tensors(g, 1.0, a, b, 0.0, out);
}

// op(a) @ op(b) with no graph. op transposes the last two dims when the flag is set. The result
// has a's dtype, except that bf16 inputs give f32 (matmul_bf16). `op` names the caller in errors.
Tensor mm(Tensor a, bool ta, Tensor b, bool tb, const char* op = "matmul") {
    a = a.detach().contiguous();
    b = b.detach().contiguous();
    int64_t ar = a.size(-2), ac = a.size(-1), br = b.size(-2), bc = b.size(-1);
    GemmArgs g;
    g.ta = ta;
    g.tb = tb;
    g.M = ta ? ac : ar;
    g.K = ta ? ar : ac;
    g.N = tb ? br : bc;
    g.lda = ac;
    g.ldb = bc;
    g.ldc = g.N;
    const Options out_options{a.dtype() == DType::bf16 ? DType::f32 : a.dtype(), a.device()};
    Tensor out;
    if (b.dim() == 2 && !ta) {
        // Every batch shares b: fold the batch into M and run one GEMM.
        Shape s = batch_of(a);
        s.push_back(g.M);
        s.push_back(g.N);
        out = Tensor::empty(s, out_options);
        g.M = numel_of(batch_of(a)) * ar;
    } else {
        Shape batch = broadcast_shapes(batch_of(a), batch_of(b), op);
        Shape sa = batch, sb = batch, so = batch;
        sa.insert(sa.end(), {ar, ac});
        sb.insert(sb.end(), {br, bc});
        so.insert(so.end(), {g.M, g.N});
        a = a.expand(sa).contiguous();
        b = b.expand(sb).contiguous();
        out = Tensor::empty(so, out_options);
        g.batch = numel_of(batch);
        g.stride_a = ar * ac;
        g.stride_b = br * bc;
        g.stride_c = g.M * g.N;
    }
    MG_CHECK(std::max({g.M, g.N, g.K, g.batch}) <= std::numeric_limits<int>::max(),
             "{}: a GEMM dimension of {} x {} x {} (batch {}) exceeds the 2^31 limit", op, g.M, g.N, g.K, g.batch);
    if (g.K == 0) return Tensor::zeros(out.shape(), out.options()); // an empty sum
    if (out.numel() > 0) run_gemm(g, a, b, out);
    return out;
}

struct MatmulBackward : autograd::Node {
    Tensor a, b;            // saved only when the other input's gradient needs them
    Shape a_shape, b_shape;
    bool need_a = false, need_b = false;
    std::string name() const override { return "MatmulBackward"; }
    void release() override { a = Tensor(); b = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        const Tensor& g = grads[0];
        Tensor da, db;
        if (need_a) da = sum_to(mm(g, false, b, true), a_shape);
        if (need_b) {
            if (b_shape.size() == 2) // b was shared by every batch: one GEMM over the folded batch
                db = mm(a.reshape({-1, a.size(-1)}), true, g.reshape({-1, g.size(-1)}), false);
            else
                db = sum_to(mm(a, true, g, false), b_shape);
        }
        return {da, db};
    }
};

// The shape checks matmul and matmul_bf16 share; `op` names the caller.
void check_matmul_shapes(const char* op, const Tensor& a, const Tensor& b) {
    MG_CHECK(a.dim() >= 2 && b.dim() >= 2, "{}: a is {} and b is {}; expected both at least 2-D", op, a.desc(),
             b.desc());
    MG_CHECK(a.size(-1) == b.size(-2), "{}: a is {} and b is {}; expected a's last dim ({}) to "
             "equal b's second-to-last dim ({})", op, a.desc(), b.desc(), a.size(-1), b.size(-2));
}
} // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
    check_float("matmul", "a", a);
    check_float("matmul", "b", b);
    check_same("matmul", "a", a, "b", b);
    check_matmul_shapes("matmul", a, b);
    Tensor out = mm(a, false, b, false);
    autograd::record<MatmulBackward>({a, b}, {out}, [&](MatmulBackward& n) {
        n.need_a = a.requires_grad();
        n.need_b = b.requires_grad();
        n.a_shape = a.shape();
        n.b_shape = b.shape();
        if (n.need_b) n.a = a.detach(); // db = a^T g
        if (n.need_a) n.b = b.detach(); // da = g b^T
    });
    return out;
}

Tensor matmul_bf16(const Tensor& a, const Tensor& b) {
    check_defined("matmul_bf16", "a", a);
    check_defined("matmul_bf16", "b", b);
    MG_CHECK(a.dtype() == DType::bf16 && b.dtype() == DType::bf16,
             "matmul_bf16: a is {} and b is {}; expected both bf16 (convert with .to(DType::bf16))", a.desc(), b.desc());
    MG_CHECK(a.device() == b.device(), "matmul_bf16: a is {} but b is {}; expected both on the same device", a.desc(),
             b.desc());
    check_matmul_shapes("matmul_bf16", a, b);
    return mm(a, false, b, false, "matmul_bf16"); // no node: bf16 tensors never require grad (see the header)
}

#define MG_INST(T)                                                                                       \
    template void gemm_cpu<T>(const GemmArgs&, T, const T*, const T*, T, T*);                              \
    template void gemm_blocked<T>(const GemmArgs&, T, const T*, const T*, T, T*);                          \
    template void gemm_ref<T>(const GemmArgs&, double, const T*, const T*, double, double*);
MG_INST(float)
MG_INST(double)

} // namespace mg
