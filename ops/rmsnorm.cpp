// ops/rmsnorm.cpp: see ops/rmsnorm.h for shapes and derivatives.
#include "ops/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/node.h"
#include "cuda/rmsnorm.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
template <typename T>
void rmsnorm_forward_cpu(T* out, T* h_out, T* rstd, const T* x, const T* residual, const T* weight, int64_t N,
                         int64_t D, double eps) {
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t n = 0; n < N; ++n) {
        const T* xr = x + n * D;
        const T* rr = residual ? residual + n * D : nullptr;
        double ss = 0;
        for (int64_t j = 0; j < D; ++j) {
            T h = rr ? xr[j] + rr[j] : xr[j];
            if (h_out) h_out[n * D + j] = h;
            ss += double(h) * double(h);
        }
        T r = T(1.0 / std::sqrt(ss / double(D) + eps));
        rstd[n] = r;
        for (int64_t j = 0; j < D; ++j) {
            T h = rr ? xr[j] + rr[j] : xr[j];
            out[n * D + j] = h * r * weight[j];
        }
    }
}

// dx_nj = r_n w_j g_nj - h_nj r_n^3 S_n / D (+ dh_nj),  S_n = sum_k g_nk w_k h_nk
// dw_j  = sum_n g_nj h_nj r_n
template <typename T>
void rmsnorm_backward_cpu(T* dx, T* dweight, const T* dout, const T* dh, const T* h, const T* weight, const T* rstd,
                          int64_t N, int64_t D) {
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t n = 0; n < N; ++n) {
        const T* g = dout + n * D;
        const T* hr = h + n * D;
        double S = 0;
        for (int64_t j = 0; j < D; ++j) S += double(g[j]) * double(weight[j]) * double(hr[j]);
        double r = double(rstd[n]), c = r * r * r * S / double(D);
        for (int64_t j = 0; j < D; ++j) {
            double v = r * double(weight[j]) * double(g[j]) - double(hr[j]) * c;
            if (dh) v += double(dh[n * D + j]);
            dx[n * D + j] = T(v);
        }
    }
    if (!dweight) return;
    // Threads own blocks of columns and walk all rows in order: the sums do not depend on the
    // thread count.
    constexpr int64_t kCols = 64;
    int64_t blocks = (D + kCols - 1) / kCols;
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        int64_t j0 = blk * kCols, j1 = std::min(D, j0 + kCols);
        double acc[kCols] = {};
        for (int64_t n = 0; n < N; ++n) {
            double r = double(rstd[n]);
            for (int64_t j = j0; j < j1; ++j) acc[j - j0] += double(dout[n * D + j]) * double(h[n * D + j]) * r;
        }
        for (int64_t j = j0; j < j1; ++j) dweight[j] = T(acc[j - j0]);
    }
}

// ---- references -----------------------------------------------------------------------------
template <typename T>
void rmsnorm_ref(double* out, const T* x, const T* weight, int64_t N, int64_t D, double eps) {
    for (int64_t n = 0; n < N; ++n) {
        double ms = 0;
        for (int64_t j = 0; j < D; ++j) ms += double(x[n * D + j]) * double(x[n * D + j]);
        double r = 1.0 / std::sqrt(ms / double(D) + eps);
        for (int64_t j = 0; j < D; ++j) out[n * D + j] = double(x[n * D + j]) * r * double(weight[j]);
    }
}

template <typename T>
void rmsnorm_backward_ref(double* dx, double* dweight, const T* dout, const T* x, const T* weight, int64_t N,
                          int64_t D, double eps) {
    for (int64_t j = 0; j < D; ++j) dweight[j] = 0;
    for (int64_t n = 0; n < N; ++n) {
        double ms = 0, S = 0;
        for (int64_t j = 0; j < D; ++j) {
            double xv = double(x[n * D + j]);
            ms += xv * xv;
            S += double(dout[n * D + j]) * double(weight[j]) * xv;
        }
        double r = 1.0 / std::sqrt(ms / double(D) + eps);
        for (int64_t j = 0; j < D; ++j) {
            double xv = double(x[n * D + j]), g = double(dout[n * D + j]);
            dx[n * D + j] = r * double(weight[j]) * g - xv * r * r * r * S / double(D);
            dweight[j] += g * xv * r;
        }
    }
}

namespace {

struct RmsNormBackward : autograd::Node {
    Tensor h, weight, rstd; // h: the normalised input (x, or x + residual), contiguous (N, D)
    int64_t N = 0, D = 0;
    bool residual_form = false; // inputs (x, residual, weight), outputs (normed, h)
    bool need_x = false, need_res = false, need_w = false;
    std::string name() const override { return residual_form ? "RmsNormResidualBackward" : "RmsNormBackward"; }
    void release() override { h = Tensor(); weight = Tensor(); rstd = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dout = grads[0].contiguous();
        Tensor dh = residual_form ? grads[1].contiguous() : Tensor();
        Device dev = dout.device();
        Tensor dx = Tensor::empty(h.shape(), dout.options());
        Tensor dw = need_w ? Tensor::empty({D}, dout.options()) : Tensor();
        dispatch_float(dout.dtype(), "rmsnorm", [&]<typename T>() {
            T* dwp = dw.defined() ? dw.data<T>() : nullptr;
            const T* dhp = dh.defined() ? dh.data<T>() : nullptr;
            if (dev.is_cpu()) {
                rmsnorm_backward_cpu<T>(dx.data<T>(), dwp, dout.data<T>(), dhp, h.data<T>(), weight.data<T>(),
                                        rstd.data<T>(), N, D);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                             size_t bytes = cuda::rmsnorm_backward_workspace(N, D, sizeof(T));
                             Tensor ws = Tensor::empty({int64_t((bytes + 7) / 8)}, {DType::f64, dev});
                             cuda::rmsnorm_backward<T>(dx.data<T>(), dwp, dout.data<T>(), dhp, h.data<T>(),
                                                       weight.data<T>(), rstd.data<T>(), ws.raw_data(), N, D));
            }
        });
        if (!residual_form) return {need_x ? dx : Tensor(), dw};
        // h = x + residual: both receive dh
        return {need_x ? dx : Tensor(), need_res ? dx : Tensor(), dw};
    }
};

void check_args(const char* op, const Tensor& x, const Tensor& residual, const Tensor& weight, double eps) {
    check_float(op, "x", x);
    check_float(op, "weight", weight);
    check_same(op, "x", x, "weight", weight);
    MG_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1), "{}: weight is {}, expected (D) "
             "with D = x's last dim, x is {}", op, weight.desc(), x.desc());
    if (residual.defined()) {
        check_same(op, "x", x, "residual", residual);
        MG_CHECK(residual.shape() == x.shape(), "{}: residual is {} but x is {}; expected the same shape", op,
                 residual.desc(), x.desc());
    }
    MG_CHECK(eps >= 0 && std::isfinite(eps), "{}: eps = {} for x {}, expected a finite eps >= 0", op, eps, x.desc());
}

// The shared forward. residual may be undefined (plain rmsnorm: h = x, not returned).
RmsNormResidual forward(const char* op, const Tensor& x_in, const Tensor& res_in, const Tensor& w_in, double eps) {
    check_args(op, x_in, res_in, w_in, eps);
    int64_t D = x_in.size(-1), N = D > 0 ? x_in.numel() / D : 0;
    Tensor x = x_in.detach().contiguous(), w = w_in.detach().contiguous();
    Tensor res = res_in.defined() ? res_in.detach().contiguous() : Tensor();
    bool residual_form = res.defined();
    Device dev = x.device();
    Tensor out = Tensor::empty(x.shape(), x.options());
    Tensor h = residual_form ? Tensor::empty(x.shape(), x.options()) : x;
    Tensor rstd = Tensor::empty({N}, x.options());
    dispatch_float(x.dtype(), op, [&]<typename T>() {
        T* hp = residual_form ? h.data<T>() : nullptr;
        const T* rp = residual_form ? res.data<T>() : nullptr;
        if (dev.is_cpu()) {
            rmsnorm_forward_cpu<T>(out.data<T>(), hp, rstd.data<T>(), x.data<T>(), rp, w.data<T>(), N, D, eps);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                         cuda::rmsnorm_forward<T>(out.data<T>(), hp, rstd.data<T>(), x.data<T>(), rp, w.data<T>(), N,
                                                  D, eps));
        }
    });
    std::vector<Tensor> inputs = residual_form ? std::vector<Tensor>{x_in, res_in, w_in} : std::vector<Tensor>{x_in, w_in};
    std::vector<Tensor> outputs = residual_form ? std::vector<Tensor>{out, h} : std::vector<Tensor>{out};
    autograd::record<RmsNormBackward>(inputs, outputs, [&](RmsNormBackward& n) {
        n.h = h.detach();
        n.weight = w;
        n.rstd = rstd;
        n.N = N;
        n.D = D;
        n.residual_form = residual_form;
        n.need_x = x_in.requires_grad();
        n.need_res = residual_form && res_in.requires_grad();
        n.need_w = w_in.requires_grad();
    });
    return {out, residual_form ? h : x_in};
}

} // namespace

Tensor rmsnorm(const Tensor& x, const Tensor& weight, double eps) { return forward("rmsnorm", x, Tensor(), weight, eps).normed; }

RmsNormResidual rmsnorm_residual(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps) {
    if (!residual.defined()) { // the first block: h = x itself, which carries its own graph
        check_args("rmsnorm_residual", x, residual, weight, eps);
        return {rmsnorm(x, weight, eps), x};
    }
    return forward("rmsnorm_residual", x, residual, weight, eps);
}

#define MG_INST(T)                                                                                            \
    template void rmsnorm_forward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double);  \
    template void rmsnorm_backward_cpu<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,   \
                                          int64_t);                                                          \
    template void rmsnorm_ref<T>(double*, const T*, const T*, int64_t, int64_t, double);                      \
    template void rmsnorm_backward_ref<T>(double*, double*, const T*, const T*, const T*, int64_t, int64_t, double);
MG_INST(float)
MG_INST(double)

} // namespace mg
