// ops/conv1d.cpp: see ops/conv1d.h for shapes, orientation and derivatives.
#include "ops/conv1d.h"

#include <algorithm>
#include <vector>

#include "cuda/conv1d.h"
#include "cuda/runtime.h"
#include "ops/causal_conv_op.h"
#include "ops/checks.h"
#include "ops/dispatch.h"
#include "ops/vec_math.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
namespace {
// weight (D,K) -> (K,D), so the inner loops of the kernels run along contiguous channels.
template <typename T> std::vector<T> taps_major(const T* weight, int64_t D, int64_t K) {
    std::vector<T> wt(static_cast<size_t>(K * D));
    for (int64_t d = 0; d < D; ++d)
        for (int64_t k = 0; k < K; ++k) wt[size_t(k * D + d)] = weight[d * K + k];
    return wt;
}
constexpr int64_t kChannelBlock = 16; // channels per task of the weight-gradient reduction

// v = silu(v + bias) over one row of D channels, and g = dy * dsilu(pre) over n values. Float
// uses vm::silu / vm::silu_grad (vectorisable; the AVX2 + FMA copy when the CPU has it), double
// uses libm through conv_silu. A scalar libm call per element cost more than the convolution.
template <typename T> void bias_silu_row(T* v, const T* bias, int64_t D, bool silu) {
    for (int64_t d = 0; d < D; ++d) {
        T x = v[d] + (bias ? bias[d] : T(0));
        v[d] = silu ? conv_silu(x) : x;
    }
}
template <typename T> void dsilu_mul(T* g, const T* dy, int64_t n) {
    for (int64_t i = 0; i < n; ++i) g[i] = dy[i] * conv_dsilu(g[i]);
}
// The float bodies, compiled twice: as is, and inside the AVX2 + FMA wrappers below.
inline void bias_silu_row_f32(float* v, const float* bias, int64_t D, bool silu) {
    if (bias)
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) v[d] += bias[d];
    if (silu)
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) v[d] = vm::silu(v[d]);
}
inline void dsilu_mul_f32(float* g, const float* dy, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) g[i] = dy[i] * vm::silu_grad(g[i]);
}
#if MG_VM_HAVE_AVX2
MG_VM_AVX2_FN void bias_silu_row_avx2(float* v, const float* bias, int64_t D, bool silu) {
    bias_silu_row_f32(v, bias, D, silu);
}
MG_VM_AVX2_FN void dsilu_mul_avx2(float* g, const float* dy, int64_t n) { dsilu_mul_f32(g, dy, n); }
#endif
template <> void bias_silu_row<float>(float* v, const float* bias, int64_t D, bool silu) {
#if MG_VM_HAVE_AVX2
    if (vm::use_avx2()) return bias_silu_row_avx2(v, bias, D, silu);
#endif
    bias_silu_row_f32(v, bias, D, silu);
}
template <> void dsilu_mul<float>(float* g, const float* dy, int64_t n) {
#if MG_VM_HAVE_AVX2
    if (vm::use_avx2()) return dsilu_mul_avx2(g, dy, n);
#endif
    dsilu_mul_f32(g, dy, n);
}
} // namespace

// One output row (b,t) at a time: y[b,t,:] = sum over the taps that see t >= 0, then bias, silu.
template <typename T>
void causal_conv1d_forward_cpu(T* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L,
                               int64_t D, int64_t K, bool silu) {
    std::vector<T> wt = taps_major(weight, D, K);
    int64_t rows = B * L;
#pragma omp parallel for if (rows * D * K > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
        int64_t t = r % L;
        T* yr = y + r * D;
        std::fill_n(yr, D, T(0));
        for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
            const T* xr = x + (r - (K - 1) + k) * D; // x[b, t-(K-1)+k, :], same batch since that time >= 0
            const T* wk = wt.data() + k * D;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) yr[d] += wk[d] * xr[d];
        }
        bias_silu_row(yr, bias, D, silu);
    }
}

// Backward:
//   gp = g * dsilu(pre) (silu; pre recomputed by the forward kernel) or g
//   dx[b,s,d] = sum_k w[d,k] gp[b, s+(K-1)-k, d]
//   dw[d,k] = sum_{b,t} gp[b,t,d] x[b, t-(K-1)+k, d],  dbias[d] = sum_{b,t} gp[b,t,d]
// dx runs over rows in parallel; dw/dbias over blocks of channels, each channel's sum taken in
// one fixed (b, t) order in double, so the result does not depend on the thread count.
template <typename T>
void causal_conv1d_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                                const T* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    int64_t rows = B * L, n = rows * D;
    std::vector<T> gbuf;
    const T* g = dy;
    if (silu) {
        gbuf.resize(size_t(n));
        causal_conv1d_forward_cpu(gbuf.data(), x, weight, bias, B, L, D, K, false); // pre
        const int64_t chunk = 4096;
#pragma omp parallel for if (n > kParallelGrain)
        for (int64_t i = 0; i < n; i += chunk) dsilu_mul(gbuf.data() + i, dy + i, std::min(chunk, n - i));
        g = gbuf.data();
    }
    std::vector<T> wt = taps_major(weight, D, K);
#pragma omp parallel for if (n * K > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
        int64_t s = r % L;
        T* dxr = dx + r * D;
        std::fill_n(dxr, D, T(0));
        for (int64_t k = std::max<int64_t>(0, s + K - L); k < K; ++k) {
            const T* gr = g + (r + (K - 1) - k) * D; // gp[b, s+(K-1)-k, :], inside the sequence
            const T* wk = wt.data() + k * D;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) dxr[d] += wk[d] * gr[d];
        }
    }
    int64_t nblocks = (D + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) if (n * K > kParallelGrain)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
        int64_t d0 = blk * kChannelBlock, dn = std::min(kChannelBlock, D - d0);
        std::vector<double> acc(size_t((K + 1) * dn), 0.0); // rows 0..K-1: dw taps; row K: dbias
        for (int64_t r = 0; r < rows; ++r) {
            int64_t t = r % L;
            const T* gr = g + r * D + d0;
            for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
                const T* xr = x + (r - (K - 1) + k) * D + d0;
                double* a = acc.data() + k * dn;
#pragma omp simd
                for (int64_t j = 0; j < dn; ++j) a[j] += double(gr[j]) * double(xr[j]);
            }
            double* a = acc.data() + K * dn;
#pragma omp simd
            for (int64_t j = 0; j < dn; ++j) a[j] += double(gr[j]);
        }
        for (int64_t j = 0; j < dn; ++j) {
            for (int64_t k = 0; k < K; ++k) dweight[(d0 + j) * K + k] = T(acc[size_t(k * dn + j)]);
            if (dbias) dbias[d0 + j] = T(acc[size_t(K * dn + j)]);
        }
    }
}

// One channel per iteration: conv_step_channel (ops/conv1d.h).
template <typename T>
void causal_conv1d_update_cpu(T* y, T* conv_state, const T* x, const T* weight, const T* bias, int64_t B,
                              int64_t D, int64_t K, bool silu) {
#pragma omp parallel for if (B * D * K > kParallelGrain)
    for (int64_t i = 0; i < B * D; ++i) {
        int64_t d = i % D;
        y[i] = conv_step_channel(conv_state + i * (K - 1), x[i], weight + d * K, bias ? bias[d] : T(0), K, silu);
    }
}

// ---- references (double, the formulas written out) -------------------------------------------
template <typename T>
void causal_conv1d_ref(double* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L,
                       int64_t D, int64_t K, bool silu) {
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t)
            for (int64_t d = 0; d < D; ++d) {
                double acc = bias ? double(bias[d]) : 0.0;
                for (int64_t k = 0; k < K; ++k) {
                    int64_t ts = t - (K - 1) + k;
                    if (ts >= 0) acc += double(weight[d * K + k]) * double(x[(b * L + ts) * D + d]);
                }
                y[(b * L + t) * D + d] = silu ? conv_silu(acc) : acc;
            }
}

template <typename T>
void causal_conv1d_backward_ref(double* dx, double* dweight, double* dbias, const T* dy, const T* x,
                                const T* weight, const T* bias, int64_t B, int64_t L, int64_t D, int64_t K,
                                bool silu) {
    int64_t n = B * L * D;
    std::vector<double> pre(static_cast<size_t>(n)), gp(static_cast<size_t>(n));
    causal_conv1d_ref(pre.data(), x, weight, bias, B, L, D, K, false);
    for (int64_t i = 0; i < n; ++i) gp[size_t(i)] = double(dy[i]) * (silu ? conv_dsilu(pre[size_t(i)]) : 1.0);
    std::fill_n(dx, n, 0.0);
    std::fill_n(dweight, D * K, 0.0);
    if (dbias) std::fill_n(dbias, D, 0.0);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t)
            for (int64_t d = 0; d < D; ++d) {
                double g = gp[size_t((b * L + t) * D + d)];
                if (dbias) dbias[d] += g;
                for (int64_t k = 0; k < K; ++k) {
                    int64_t ts = t - (K - 1) + k; // y[t] read x[ts] through w[d,k]
                    if (ts < 0) continue;
                    dx[(b * L + ts) * D + d] += double(weight[d * K + k]) * g;
                    dweight[d * K + k] += double(x[(b * L + ts) * D + d]) * g;
                }
            }
}

// ---- validation -----------------------------------------------------------------------------
namespace {
// weight (D,K) with K >= 1 and bias (D) or undefined, both matching `xname` (whose channel count
// is D) in dtype and device.
void check_weight_bias(const char* op, const char* xname, const Tensor& x, int64_t D, const Tensor& weight,
                       const Tensor& bias) {
    check_float(op, "weight", weight);
    check_same(op, xname, x, "weight", weight);
    MG_CHECK(weight.dim() == 2 && weight.size(0) == D && weight.size(1) >= 1,
             "{}: weight is {}, expected (D, K) = ({}, K) with K >= 1 to match {} {}", op, weight.desc(), D,
             xname, x.desc());
    if (bias.defined()) {
        check_float(op, "bias", bias);
        check_same(op, xname, x, "bias", bias);
        MG_CHECK(bias.dim() == 1 && bias.size(0) == D, "{}: bias is {}, expected (D) = ({}) to match {} {}", op,
                 bias.desc(), D, xname, x.desc());
    }
}
} // namespace

void check_causal_conv_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
    check_float(op, "x", x);
    MG_CHECK(x.dim() == 3, "{}: x is {}, expected a 3-D tensor (B, L, D)", op, x.desc());
    check_weight_bias(op, "x", x, x.size(2), weight, bias);
}

// ---- the op ---------------------------------------------------------------------------------
namespace {

struct DirectConvKernels {
    static constexpr const char* op = "causal_conv1d";
    static constexpr const char* node = "CausalConv1dBackward";
    template <typename T>
    static void forward(Device dev, T* y, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t D,
                        int64_t K, bool silu) {
        if (dev.is_cpu()) return causal_conv1d_forward_cpu<T>(y, x, w, bias, B, L, D, K, silu);
        MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index); cuda::causal_conv1d_forward<T>(y, x, w, bias, B, L, D, K, silu));
    }
    template <typename T>
    static void backward(Device dev, T* dx, T* dw, T* dbias, const T* dy, const T* x, const T* w, const T* bias,
                         int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
        if (dev.is_cpu()) return causal_conv1d_backward_cpu<T>(dx, dw, dbias, dy, x, w, bias, B, L, D, K, silu);
        MG_CUDA_ONLY(
            cuda::DeviceGuard g(dev.index);
            Tensor work = Tensor::empty({cuda::causal_conv1d_backward_work(B, L, D, K, silu)}, Options{dtype_of<T>, dev});
            cuda::causal_conv1d_backward<T>(dx, dw, dbias, work.data<T>(), dy, x, w, bias, B, L, D, K, silu));
    }
};

} // namespace

Tensor causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu) {
    return detail::causal_conv_op<DirectConvKernels>(x, weight, bias, silu);
}

Tensor causal_conv1d_update(const Tensor& conv_state, const Tensor& x_t, const Tensor& weight, const Tensor& bias,
                            bool silu) {
    const char* op = "causal_conv1d_update";
    check_float(op, "x_t", x_t);
    MG_CHECK(x_t.dim() == 2, "{}: x_t is {}, expected a 2-D tensor (B, D)", op, x_t.desc());
    int64_t B = x_t.size(0), D = x_t.size(1);
    check_weight_bias(op, "x_t", x_t, D, weight, bias);
    int64_t K = weight.size(1);
    check_float(op, "conv_state", conv_state);
    check_same(op, "x_t", x_t, "conv_state", conv_state);
    MG_CHECK(conv_state.dim() == 3 && conv_state.size(0) == B && conv_state.size(1) == D &&
                 conv_state.size(2) == K - 1,
             "{}: conv_state is {}, expected (B, D, K-1) = ({},{},{}) to match x_t {} and weight {}", op,
             conv_state.desc(), B, D, K - 1, x_t.desc(), weight.desc());
    MG_CHECK(conv_state.is_contiguous(), "{}: conv_state {} is updated in place and must be contiguous", op,
             conv_state.desc());
    Tensor xc = x_t.detach().contiguous(), wc = weight.detach().contiguous();
    Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
    Tensor y = Tensor::empty(xc.shape(), xc.options());
    if (y.numel() == 0) return y;
    dispatch_float(xc.dtype(), op, [&]<typename T>() {
        const T* pb = bc.defined() ? bc.data<T>() : nullptr;
        if (xc.device().is_cpu()) {
            causal_conv1d_update_cpu<T>(y.data<T>(), conv_state.data<T>(), xc.data<T>(), wc.data<T>(), pb, B, D, K, silu);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(xc.device().index);
                         cuda::causal_conv1d_update<T>(y.data<T>(), conv_state.data<T>(), xc.data<T>(), wc.data<T>(),
                                                       pb, B, D, K, silu));
        }
    });
    return y;
}

#define MG_INST(T)                                                                                         \
    template void causal_conv1d_forward_cpu<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                               int64_t, bool);                                             \
    template void causal_conv1d_backward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t, \
                                                int64_t, int64_t, int64_t, bool);                          \
    template void causal_conv1d_update_cpu<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t,      \
                                              int64_t, bool);                                              \
    template void causal_conv1d_ref<T>(double*, const T*, const T*, const T*, int64_t, int64_t, int64_t,    \
                                       int64_t, bool);                                                     \
    template void causal_conv1d_backward_ref<T>(double*, double*, double*, const T*, const T*, const T*,   \
                                                const T*, int64_t, int64_t, int64_t, int64_t, bool);
MG_INST(float)
MG_INST(double)

} // namespace mg
