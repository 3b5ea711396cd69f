// ops/attention.cpp: see ops/attention.h for shapes, derivatives and the algorithm.
#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/node.h"
#include "cuda/attention.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"
#include "ops/vec_math.h"

namespace mg {

namespace {

constexpr int64_t kCpuBlockQ = 32; // queries per forward / dq task
constexpr int64_t kCpuBlockK = 64; // keys per block of the forward's walk and per dk/dv task

// The keys query i sees: [0, key_end(i)).
struct Visible {
    int64_t Lk, shift; // shift = Lk - Lq
    bool causal;
    int64_t key_end(int64_t i) const { return causal ? std::min(Lk, i + shift + 1) : Lk; }
    int64_t first_query(int64_t j) const { return causal ? std::max<int64_t>(0, j - shift) : 0; }
};

template <typename T> T dot(const T* a, const T* b, int64_t n) {
    T s = T(0);
    for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
    return s;
}

// x (BH, L, Dh) -> (BH, Dh, L): so that a query's scores against a run of keys are an inner loop
// over contiguous keys (vectorised), not one dot product (a serial sum) per key.
template <typename T> std::vector<T> transposed(const T* x, int64_t BH, int64_t L, int64_t Dh) {
    std::vector<T> t(size_t(BH * L * Dh));
#pragma omp parallel for if (BH * L * Dh > kParallelGrain)
    for (int64_t bh = 0; bh < BH; ++bh)
        for (int64_t l = 0; l < L; ++l)
            for (int64_t d = 0; d < Dh; ++d) t[size_t((bh * Dh + d) * L + l)] = x[(bh * L + l) * Dh + d];
    return t;
}

// e^x: vm::exp for float (branch-free, so the loops that call it vectorise; <= 1 ulp), std::exp
// for double.
inline float exp_of(float x) { return vm::exp(x); }
inline double exp_of(double x) { return std::exp(x); }

// out[j - j0] = sum_d row[d] xt[d, j] for keys j in [j0, j1); xt is one head's (Dh, L) block.
template <typename T>
void row_times(T* out, const T* row, const T* xt, int64_t L, int64_t Dh, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) out[j - j0] = T(0);
    for (int64_t d = 0; d < Dh; ++d) {
        const T r = row[d];
        const T* x = xt + d * L;
        for (int64_t j = j0; j < j1; ++j) out[j - j0] += r * x[j];
    }
}

} // namespace

// ---- CPU kernels ----------------------------------------------------------------------------
template <typename T>
void attention_forward_cpu(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH, int64_t Lq, int64_t Lk,
                           int64_t Dh, bool causal, double scale_d) {
    const Visible vis{Lk, Lk - Lq, causal};
    const int64_t qblocks = (Lq + kCpuBlockQ - 1) / kCpuBlockQ;
    const T scale = T(scale_d);
    const std::vector<T> kt = transposed(k, BH, Lk, Dh);
#pragma omp parallel for schedule(dynamic) if (BH * Lq * Lk * Dh > kParallelGrain)
    for (int64_t task = 0; task < BH * qblocks; ++task) {
        const int64_t bh = task / qblocks, i0 = (task % qblocks) * kCpuBlockQ, i1 = std::min(Lq, i0 + kCpuBlockQ);
        const T* qb = q + bh * Lq * Dh;
        const T* ktb = kt.data() + bh * Dh * Lk;
        const T* vb = v + bh * Lk * Dh;
        // per query of the block: running max m, running sum l, unnormalised output acc
        std::vector<T> m(size_t(kCpuBlockQ), -std::numeric_limits<T>::infinity()), l(size_t(kCpuBlockQ), T(0));
        std::vector<T> acc(size_t(kCpuBlockQ * Dh), T(0)), s(static_cast<size_t>(kCpuBlockK));
        const int64_t kend = vis.key_end(i1 - 1);
        for (int64_t j0 = 0; j0 < kend; j0 += kCpuBlockK) {
            const int64_t j1 = std::min(kend, j0 + kCpuBlockK);
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t r = i - i0, je = std::min(j1, vis.key_end(i));
                if (je <= j0) continue;
                row_times(s.data(), qb + i * Dh, ktb, Lk, Dh, j0, je);
                T mx = m[size_t(r)];
                for (int64_t j = j0; j < je; ++j) {
                    s[size_t(j - j0)] *= scale;
                    mx = std::max(mx, s[size_t(j - j0)]);
                }
                const T alpha = std::exp(m[size_t(r)] - mx); // 0 on the first block (m = -inf)
                T* a = acc.data() + r * Dh;
                T rowsum = T(0);
                for (int64_t d = 0; d < Dh; ++d) a[d] *= alpha;
                for (int64_t j = 0; j < je - j0; ++j) s[size_t(j)] = exp_of(s[size_t(j)] - mx);
                for (int64_t j = j0; j < je; ++j) {
                    const T p = s[size_t(j - j0)];
                    rowsum += p;
                    const T* vj = vb + j * Dh;
                    for (int64_t d = 0; d < Dh; ++d) a[d] += p * vj[d];
                }
                l[size_t(r)] = l[size_t(r)] * alpha + rowsum;
                m[size_t(r)] = mx;
            }
        }
        for (int64_t i = i0; i < i1; ++i) { // every query sees key 0, so l > 0
            const int64_t r = i - i0;
            const T inv = T(1) / l[size_t(r)];
            for (int64_t d = 0; d < Dh; ++d) out[(bh * Lq + i) * Dh + d] = acc[size_t(r * Dh + d)] * inv;
            lse[bh * Lq + i] = m[size_t(r)] + std::log(l[size_t(r)]);
        }
    }
}

template <typename T>
void attention_backward_cpu(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                            const T* lse, int64_t BH, int64_t Lq, int64_t Lk, int64_t Dh, bool causal,
                            double scale_d) {
    const Visible vis{Lk, Lk - Lq, causal};
    const T scale = T(scale_d);
    const bool par = BH * Lq * Lk * Dh > kParallelGrain;
    std::vector<T> delta(size_t(BH * Lq)); // D_i = dout_i . out_i
#pragma omp parallel for if (par)
    for (int64_t r = 0; r < BH * Lq; ++r) delta[size_t(r)] = dot(dout + r * Dh, out + r * Dh, Dh);
    const std::vector<T> kt = transposed(k, BH, Lk, Dh), vt = transposed(v, BH, Lk, Dh);
    // For query i and keys [j0, j1): P_ij, recomputed from lse, into p; dS_ij = P_ij (dP_ij - D_i)
    // with dP_ij = dout_i . v_j, into ds.
    auto p_and_ds = [&](int64_t bh, int64_t i, int64_t j0, int64_t j1, T* p, T* ds) {
        const int64_t row = bh * Lq + i;
        row_times(p, q + row * Dh, kt.data() + bh * Dh * Lk, Lk, Dh, j0, j1);
        row_times(ds, dout + row * Dh, vt.data() + bh * Dh * Lk, Lk, Dh, j0, j1);
        const T l = lse[row], D = delta[size_t(row)];
        for (int64_t j = 0; j < j1 - j0; ++j) {
            p[j] = exp_of(scale * p[j] - l);
            ds[j] = p[j] * (ds[j] - D);
        }
    };
    // dk, dv: one task per key block, walking every query that sees it
    const int64_t kblocks = (Lk + kCpuBlockK - 1) / kCpuBlockK;
#pragma omp parallel for schedule(dynamic) if (par)
    for (int64_t task = 0; task < BH * kblocks; ++task) {
        const int64_t bh = task / kblocks, j0 = (task % kblocks) * kCpuBlockK, j1 = std::min(Lk, j0 + kCpuBlockK);
        std::fill(dk + (bh * Lk + j0) * Dh, dk + (bh * Lk + j1) * Dh, T(0));
        std::fill(dv + (bh * Lk + j0) * Dh, dv + (bh * Lk + j1) * Dh, T(0));
        T p[kCpuBlockK], ds[kCpuBlockK];
        for (int64_t i = vis.first_query(j0); i < Lq; ++i) {
            const int64_t je = std::min(j1, vis.key_end(i));
            if (je <= j0) continue;
            p_and_ds(bh, i, j0, je, p, ds);
            const T* qi = q + (bh * Lq + i) * Dh;
            const T* gi = dout + (bh * Lq + i) * Dh;
            for (int64_t j = j0; j < je; ++j) {
                T* dkj = dk + (bh * Lk + j) * Dh;
                T* dvj = dv + (bh * Lk + j) * Dh;
                const T pj = p[j - j0], dsj = scale * ds[j - j0];
                for (int64_t d = 0; d < Dh; ++d) {
                    dvj[d] += pj * gi[d];
                    dkj[d] += dsj * qi[d];
                }
            }
        }
    }
    // dq: one task per query block, walking the keys each query sees in blocks
    const int64_t qblocks = (Lq + kCpuBlockQ - 1) / kCpuBlockQ;
#pragma omp parallel for schedule(dynamic) if (par)
    for (int64_t task = 0; task < BH * qblocks; ++task) {
        const int64_t bh = task / qblocks, i0 = (task % qblocks) * kCpuBlockQ, i1 = std::min(Lq, i0 + kCpuBlockQ);
        T p[kCpuBlockK], ds[kCpuBlockK];
        for (int64_t i = i0; i < i1; ++i) {
            T* dqi = dq + (bh * Lq + i) * Dh;
            std::fill(dqi, dqi + Dh, T(0));
            for (int64_t j0 = 0; j0 < vis.key_end(i); j0 += kCpuBlockK) {
                const int64_t je = std::min(j0 + kCpuBlockK, vis.key_end(i));
                p_and_ds(bh, i, j0, je, p, ds);
                for (int64_t j = j0; j < je; ++j) {
                    const T* kj = k + (bh * Lk + j) * Dh;
                    const T dsj = scale * ds[j - j0];
                    for (int64_t d = 0; d < Dh; ++d) dqi[d] += dsj * kj[d];
                }
            }
        }
    }
}

// ---- references -----------------------------------------------------------------------------
template <typename T>
void attention_ref(double* out, double* lse, const T* q, const T* k, const T* v, int64_t BH, int64_t Lq, int64_t Lk,
                   int64_t Dh, bool causal, double scale) {
    std::vector<double> s(static_cast<size_t>(Lk));
    for (int64_t bh = 0; bh < BH; ++bh)
        for (int64_t i = 0; i < Lq; ++i) {
            const int64_t n = causal ? std::min(Lk, i + Lk - Lq + 1) : Lk; // keys 0 .. n-1
            double mx = -INFINITY;
            for (int64_t j = 0; j < n; ++j) {
                double acc = 0;
                for (int64_t d = 0; d < Dh; ++d) acc += double(q[(bh * Lq + i) * Dh + d]) * double(k[(bh * Lk + j) * Dh + d]);
                s[size_t(j)] = scale * acc;
                mx = std::max(mx, s[size_t(j)]);
            }
            double z = 0;
            for (int64_t j = 0; j < n; ++j) z += std::exp(s[size_t(j)] - mx);
            for (int64_t d = 0; d < Dh; ++d) {
                double o = 0;
                for (int64_t j = 0; j < n; ++j) o += std::exp(s[size_t(j)] - mx) / z * double(v[(bh * Lk + j) * Dh + d]);
                out[(bh * Lq + i) * Dh + d] = o;
            }
            if (lse) lse[bh * Lq + i] = mx + std::log(z);
        }
}

template <typename T>
void attention_backward_ref(double* dq, double* dk, double* dv, const T* dout, const T* q, const T* k, const T* v,
                            int64_t BH, int64_t Lq, int64_t Lk, int64_t Dh, bool causal, double scale) {
    std::fill(dk, dk + BH * Lk * Dh, 0.0);
    std::fill(dv, dv + BH * Lk * Dh, 0.0);
    std::vector<double> p(static_cast<size_t>(Lk)), dp(static_cast<size_t>(Lk));
    for (int64_t bh = 0; bh < BH; ++bh)
        for (int64_t i = 0; i < Lq; ++i) {
            const int64_t n = causal ? std::min(Lk, i + Lk - Lq + 1) : Lk;
            const T* qi = q + (bh * Lq + i) * Dh;
            const T* gi = dout + (bh * Lq + i) * Dh;
            double mx = -INFINITY, z = 0, D = 0;
            for (int64_t j = 0; j < n; ++j) {
                double s = 0, g = 0;
                for (int64_t d = 0; d < Dh; ++d) {
                    s += double(qi[d]) * double(k[(bh * Lk + j) * Dh + d]);
                    g += double(gi[d]) * double(v[(bh * Lk + j) * Dh + d]);
                }
                p[size_t(j)] = scale * s;
                dp[size_t(j)] = g;
                mx = std::max(mx, p[size_t(j)]);
            }
            for (int64_t j = 0; j < n; ++j) z += std::exp(p[size_t(j)] - mx);
            for (int64_t j = 0; j < n; ++j) {
                p[size_t(j)] = std::exp(p[size_t(j)] - mx) / z;
                D += p[size_t(j)] * dp[size_t(j)];
            }
            for (int64_t d = 0; d < Dh; ++d) dq[(bh * Lq + i) * Dh + d] = 0;
            for (int64_t j = 0; j < n; ++j) {
                const double ds = p[size_t(j)] * (dp[size_t(j)] - D);
                for (int64_t d = 0; d < Dh; ++d) {
                    dq[(bh * Lq + i) * Dh + d] += scale * ds * double(k[(bh * Lk + j) * Dh + d]);
                    dk[(bh * Lk + j) * Dh + d] += scale * ds * double(qi[d]);
                    dv[(bh * Lk + j) * Dh + d] += p[size_t(j)] * double(gi[d]);
                }
            }
        }
}

namespace {

struct AttentionBackward : autograd::Node {
    Tensor q, k, v, out, lse; // contiguous (BH, L, Dh) data, (BH, Lq)
    int64_t BH = 0, Lq = 0, Lk = 0, Dh = 0;
    bool causal = true;
    double scale = 1;
    std::string name() const override { return "AttentionBackward"; }
    void release() override { q = k = v = out = lse = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor g = grads[0].contiguous();
        Tensor dq = Tensor::empty(q.shape(), q.options()), dk = Tensor::empty(k.shape(), k.options()),
               dv = Tensor::empty(v.shape(), v.options());
        const Device dev = g.device();
        dispatch_float(g.dtype(), "attention", [&]<typename T>() {
            if (dev.is_cpu()) {
                attention_backward_cpu<T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), g.data<T>(), q.data<T>(),
                                          k.data<T>(), v.data<T>(), out.data<T>(), lse.data<T>(), BH, Lq, Lk, Dh,
                                          causal, scale);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard guard(dev.index);
                             size_t bytes = cuda::attention_backward_workspace(BH, Lq, sizeof(T));
                             Tensor ws = Tensor::empty({int64_t((bytes + 7) / 8)}, {DType::f64, dev});
                             cuda::attention_backward<T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), g.data<T>(),
                                                         q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(),
                                                         lse.data<T>(), ws.raw_data(), BH, Lq, Lk, Dh, causal, scale));
            }
        });
        return {dq, dk, dv};
    }
};

void check_args(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, const std::optional<double>& scale) {
    check_float("attention", "q", q);
    check_same("attention", "q", q, "k", k);
    check_same("attention", "q", q, "v", v);
    auto shapes = [&] { return fmt::format("q {}, k {}, v {}", q.desc(), k.desc(), v.desc()); };
    MG_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(),
             "attention: {}: expected q (..., Lq, Dh), k and v (..., Lk, Dh) with the same number of dims (>= 2)",
             shapes());
    for (int64_t d = 0; d + 2 < q.dim(); ++d)
        MG_CHECK(k.size(d) == q.size(d) && v.size(d) == q.size(d),
                 "attention: {}: leading dim {} differs; expected the same (B, H, ...) for all three", shapes(), d);
    MG_CHECK(k.shape() == v.shape() && k.size(-1) == q.size(-1),
             "attention: {}: expected k and v of the same shape (..., Lk, Dh) with q's Dh", shapes());
    MG_CHECK(k.size(-2) >= 1 && q.size(-1) >= 1, "attention: {}: expected Lk >= 1 and Dh >= 1", shapes());
    MG_CHECK(!causal || k.size(-2) >= q.size(-2),
             "attention: {}: causal attention needs Lk >= Lq (the queries are the last Lq positions)", shapes());
    if (scale) MG_CHECK(std::isfinite(*scale), "attention: scale = {} for {}, expected a finite number", *scale, shapes());
    MG_CHECK(q.device().is_cpu() || q.size(-1) <= cuda::kAttentionMaxHeadDim,
             "attention: {}: head dim Dh = {} on {}; the fused CUDA kernels take Dh <= {}", shapes(), q.size(-1),
             q.device().str(), cuda::kAttentionMaxHeadDim);
}

} // namespace

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, bool causal, std::optional<double> scale_opt) {
    check_args(q_in, k_in, v_in, causal, scale_opt);
    const int64_t Lq = q_in.size(-2), Lk = k_in.size(-2), Dh = q_in.size(-1);
    int64_t BH = 1;
    for (int64_t d = 0; d + 2 < q_in.dim(); ++d) BH *= q_in.size(d);
    const double scale = scale_opt ? *scale_opt : 1.0 / std::sqrt(double(Dh));
    Tensor q = q_in.detach().contiguous(), k = k_in.detach().contiguous(), v = v_in.detach().contiguous();
    Tensor out = Tensor::empty(q.shape(), q.options());
    Shape lse_shape = q.shape();
    lse_shape.pop_back();
    Tensor lse = Tensor::empty(lse_shape, q.options());
    if (BH > 0) {
        const Device dev = q.device();
        dispatch_float(q.dtype(), "attention", [&]<typename T>() {
            if (dev.is_cpu()) {
                attention_forward_cpu<T>(out.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), BH, Lq,
                                         Lk, Dh, causal, scale);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                             cuda::attention_forward<T>(out.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(),
                                                        v.data<T>(), BH, Lq, Lk, Dh, causal, scale));
            }
        });
    }
    autograd::record<AttentionBackward>({q_in, k_in, v_in}, {out}, [&](AttentionBackward& n) {
        n.q = q;
        n.k = k;
        n.v = v;
        n.out = out.detach();
        n.lse = lse;
        n.BH = BH;
        n.Lq = Lq;
        n.Lk = Lk;
        n.Dh = Dh;
        n.causal = causal;
        n.scale = scale;
    });
    return out;
}

#define MG_INST(T)                                                                                                \
    template void attention_forward_cpu<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                           bool, double);                                                         \
    template void attention_backward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const T*,  \
                                            int64_t, int64_t, int64_t, int64_t, bool, double);                    \
    template void attention_ref<T>(double*, double*, const T*, const T*, const T*, int64_t, int64_t, int64_t,       \
                                   int64_t, bool, double);                                                        \
    template void attention_backward_ref<T>(double*, double*, double*, const T*, const T*, const T*, const T*,      \
                                            int64_t, int64_t, int64_t, int64_t, bool, double);
MG_INST(float)
MG_INST(double)

} // namespace mg
