// ops/layernorm.cpp: see ops/layernorm.h for shapes and derivatives.
#include "ops/layernorm.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "cuda/layernorm.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
template <typename T>
void layer_norm_forward_cpu(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t N,
                            int64_t D, double eps) {
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t n = 0; n < N; ++n) {
        const T* xr = x + n * D;
        double s = 0;
        for (int64_t j = 0; j < D; ++j) s += double(xr[j]);
        const double mu = s / double(D);
        double ss = 0; // two passes: no cancellation when |mu| >> the spread
        for (int64_t j = 0; j < D; ++j) ss += (double(xr[j]) - mu) * (double(xr[j]) - mu);
        const double r = 1.0 / std::sqrt(ss / double(D) + eps);
        mean[n] = T(mu);
        rstd[n] = T(r);
        for (int64_t j = 0; j < D; ++j) {
            double v = (double(xr[j]) - mu) * r * double(weight[j]);
            if (bias) v += double(bias[j]);
            out[n * D + j] = T(v);
        }
    }
}

// dx_nj = r_n (gw_nj - a_n - xh_nj c_n),  gw = g w,  a_n = mean_k gw_nk,  c_n = mean_k gw_nk xh_nk
// dw_j  = sum_n g_nj xh_nj,  db_j = sum_n g_nj
template <typename T>
void layer_norm_backward_cpu(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const T* mean,
                             const T* rstd, int64_t N, int64_t D) {
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t n = 0; n < N; ++n) {
        const T* g = dout + n * D;
        const T* xr = x + n * D;
        const double mu = double(mean[n]), r = double(rstd[n]);
        double a = 0, c = 0;
        for (int64_t j = 0; j < D; ++j) {
            double gw = double(g[j]) * double(weight[j]);
            a += gw;
            c += gw * (double(xr[j]) - mu) * r;
        }
        a /= double(D);
        c /= double(D);
        for (int64_t j = 0; j < D; ++j) {
            double xh = (double(xr[j]) - mu) * r;
            dx[n * D + j] = T(r * (double(g[j]) * double(weight[j]) - a - xh * c));
        }
    }
    if (!dweight && !dbias) return;
    // Threads own blocks of columns and walk all rows in order: the sums do not depend on the
    // thread count.
    constexpr int64_t kCols = 64;
    int64_t blocks = (D + kCols - 1) / kCols;
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        int64_t j0 = blk * kCols, j1 = std::min(D, j0 + kCols);
        double acc_w[kCols] = {}, acc_b[kCols] = {};
        for (int64_t n = 0; n < N; ++n) {
            const double mu = double(mean[n]), r = double(rstd[n]);
            for (int64_t j = j0; j < j1; ++j) {
                double g = double(dout[n * D + j]);
                acc_w[j - j0] += g * (double(x[n * D + j]) - mu) * r;
                acc_b[j - j0] += g;
            }
        }
        for (int64_t j = j0; j < j1; ++j) {
            if (dweight) dweight[j] = T(acc_w[j - j0]);
            if (dbias) dbias[j] = T(acc_b[j - j0]);
        }
    }
}

// ---- references -----------------------------------------------------------------------------
namespace {

// The mean and the biased variance of one row, in double, by the two-pass textbook formula.
template <typename T> std::pair<double, double> row_moments(const T* row, int64_t D) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < D; ++j) mu += double(row[j]);
    mu /= double(D);
    for (int64_t j = 0; j < D; ++j) var += (double(row[j]) - mu) * (double(row[j]) - mu);
    return {mu, var / double(D)};
}

} // namespace

template <typename T>
void layer_norm_ref(double* out, const T* x, const T* weight, const T* bias, int64_t N, int64_t D, double eps) {
    for (int64_t n = 0; n < N; ++n) {
        const auto [mu, var] = row_moments(x + n * D, D);
        double r = 1.0 / std::sqrt(var + eps);
        for (int64_t j = 0; j < D; ++j)
            out[n * D + j] = (double(x[n * D + j]) - mu) * r * double(weight[j]) + (bias ? double(bias[j]) : 0.0);
    }
}

template <typename T>
void layer_norm_backward_ref(double* dx, double* dweight, double* dbias, const T* dout, const T* x, const T* weight,
                             int64_t N, int64_t D, double eps) {
    for (int64_t j = 0; j < D; ++j) dweight[j] = dbias[j] = 0;
    for (int64_t n = 0; n < N; ++n) {
        const auto [mu, var] = row_moments(x + n * D, D);
        double r = 1.0 / std::sqrt(var + eps), a = 0, c = 0;
        for (int64_t j = 0; j < D; ++j) {
            double gw = double(dout[n * D + j]) * double(weight[j]), xh = (double(x[n * D + j]) - mu) * r;
            a += gw / double(D);
            c += gw * xh / double(D);
        }
        for (int64_t j = 0; j < D; ++j) {
            double g = double(dout[n * D + j]), xh = (double(x[n * D + j]) - mu) * r;
            dx[n * D + j] = r * (g * double(weight[j]) - a - xh * c);
            dweight[j] += g * xh;
            dbias[j] += g;
        }
    }
}

namespace {

struct LayerNormBackward : autograd::Node {
    Tensor x, weight, mean, rstd; // x contiguous (N, D)
    int64_t N = 0, D = 0;
    bool has_bias = false; // inputs (x, weight, bias), else (x, weight)
    bool need_x = false, need_w = false, need_b = false;
    std::string name() const override { return "LayerNormBackward"; }
    void release() override { x = Tensor(); weight = Tensor(); mean = Tensor(); rstd = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dout = grads[0].contiguous();
        Device dev = dout.device();
        Tensor dx = Tensor::empty(x.shape(), dout.options());
        Tensor dw = need_w ? Tensor::empty({D}, dout.options()) : Tensor();
        Tensor db = need_b ? Tensor::empty({D}, dout.options()) : Tensor();
        dispatch_float(dout.dtype(), "layer_norm", [&]<typename T>() {
            T* dwp = dw.defined() ? dw.data<T>() : nullptr;
            T* dbp = db.defined() ? db.data<T>() : nullptr;
            if (dev.is_cpu()) {
                layer_norm_backward_cpu<T>(dx.data<T>(), dwp, dbp, dout.data<T>(), x.data<T>(), weight.data<T>(),
                                           mean.data<T>(), rstd.data<T>(), N, D);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                             size_t bytes = cuda::layer_norm_backward_workspace(N, D, sizeof(T));
                             Tensor ws = Tensor::empty({int64_t((bytes + 7) / 8)}, {DType::f64, dev});
                             cuda::layer_norm_backward<T>(dx.data<T>(), dwp, dbp, dout.data<T>(), x.data<T>(),
                                                          weight.data<T>(), mean.data<T>(), rstd.data<T>(),
                                                          ws.raw_data(), N, D));
            }
        });
        if (!has_bias) return {need_x ? dx : Tensor(), dw};
        return {need_x ? dx : Tensor(), dw, db};
    }
};

void check_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
    check_float(op, "x", x);
    check_float(op, "weight", weight);
    check_same(op, "x", x, "weight", weight);
    MG_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1), "{}: weight is {}, expected (D) "
             "with D = x's last dim, x is {}", op, weight.desc(), x.desc());
    if (bias.defined()) {
        check_float(op, "bias", bias);
        check_same(op, "x", x, "bias", bias);
        MG_CHECK(bias.dim() == 1 && bias.size(0) == x.size(-1), "{}: bias is {}, expected (D) with D = x's last "
                 "dim, x is {}", op, bias.desc(), x.desc());
    }
    MG_CHECK(eps >= 0 && std::isfinite(eps), "{}: eps = {} for x {}, expected a finite eps >= 0", op, eps, x.desc());
}

} // namespace

Tensor layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, double eps) {
    const char* op = "layer_norm";
    check_args(op, x_in, w_in, b_in, eps);
    int64_t D = x_in.size(-1), N = D > 0 ? x_in.numel() / D : 0;
    Tensor x = x_in.detach().contiguous(), w = w_in.detach().contiguous();
    Tensor b = b_in.defined() ? b_in.detach().contiguous() : Tensor();
    const bool has_bias = b.defined();
    Device dev = x.device();
    Tensor out = Tensor::empty(x.shape(), x.options());
    Tensor mean = Tensor::empty({N}, x.options()), rstd = Tensor::empty({N}, x.options());
    dispatch_float(x.dtype(), op, [&]<typename T>() {
        const T* bp = has_bias ? b.data<T>() : nullptr;
        if (dev.is_cpu()) {
            layer_norm_forward_cpu<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), x.data<T>(), w.data<T>(), bp, N,
                                      D, eps);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                         cuda::layer_norm_forward<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), x.data<T>(),
                                                     w.data<T>(), bp, N, D, eps));
        }
    });
    std::vector<Tensor> inputs = has_bias ? std::vector<Tensor>{x_in, w_in, b_in} : std::vector<Tensor>{x_in, w_in};
    autograd::record<LayerNormBackward>(inputs, {out}, [&](LayerNormBackward& n) {
        n.x = x;
        n.weight = w;
        n.mean = mean;
        n.rstd = rstd;
        n.N = N;
        n.D = D;
        n.has_bias = has_bias;
        n.need_x = x_in.requires_grad();
        n.need_w = w_in.requires_grad();
        n.need_b = has_bias && b_in.requires_grad();
    });
    return out;
}

#define MG_INST(T)                                                                                               \
    template void layer_norm_forward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double);  \
    template void layer_norm_backward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,        \
                                             int64_t, int64_t);                                                  \
    template void layer_norm_ref<T>(double*, const T*, const T*, const T*, int64_t, int64_t, double);             \
    template void layer_norm_backward_ref<T>(double*, double*, double*, const T*, const T*, const T*, int64_t,    \
                                             int64_t, double);
MG_INST(float)
MG_INST(double)

} // namespace mg
