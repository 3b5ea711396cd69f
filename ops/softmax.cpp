// ops/softmax.cpp: see ops/softmax.h for shapes and derivatives.
#include "ops/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/node.h"
#include "cuda/runtime.h"
#include "cuda/softmax.h"
#include "ops/checks.h"
#include "ops/dispatch.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
// m_n = max_j x_nj (a NaN wins); y_nj = exp(x_nj - m_n) / s_n; y = 0 for a row of -inf.
template <typename T> void softmax_forward_cpu(T* out, const T* x, int64_t N, int64_t D) {
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t n = 0; n < N; ++n) {
        const T* xr = x + n * D;
        T* yr = out + n * D;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < D; ++j) {
            if (std::isnan(xr[j])) { // the row is NaN
                m = xr[j];
                break;
            }
            m = std::max(m, xr[j]);
        }
        if (m == -std::numeric_limits<T>::infinity()) { // fully masked: zeros, by definition
            for (int64_t j = 0; j < D; ++j) yr[j] = T(0);
            continue;
        }
        double s = 0; // each exponential once: kept in y, summed in double, then normalised
        for (int64_t j = 0; j < D; ++j) {
            yr[j] = T(std::exp(double(xr[j]) - double(m)));
            s += double(yr[j]);
        }
        for (int64_t j = 0; j < D; ++j) yr[j] = T(double(yr[j]) / s);
    }
}

// dx_nj = y_nj (g_nj - sum_k g_nk y_nk)
template <typename T> void softmax_backward_cpu(T* dx, const T* dout, const T* y, int64_t N, int64_t D) {
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t n = 0; n < N; ++n) {
        const T* g = dout + n * D;
        const T* yr = y + n * D;
        double dot = 0;
        for (int64_t j = 0; j < D; ++j) dot += double(g[j]) * double(yr[j]);
        for (int64_t j = 0; j < D; ++j) dx[n * D + j] = T(double(yr[j]) * (double(g[j]) - dot));
    }
}

// ---- references -----------------------------------------------------------------------------
template <typename T> void softmax_ref(double* out, const T* x, int64_t N, int64_t D) {
    const double inf = std::numeric_limits<double>::infinity();
    for (int64_t n = 0; n < N; ++n) {
        double m = -inf;
        for (int64_t j = 0; j < D; ++j) {
            if (std::isnan(double(x[n * D + j]))) {
                m = double(x[n * D + j]);
                break;
            }
            m = std::max(m, double(x[n * D + j]));
        }
        double s = 0;
        for (int64_t j = 0; j < D; ++j) s += std::exp(double(x[n * D + j]) - m);
        for (int64_t j = 0; j < D; ++j) out[n * D + j] = m == -inf ? 0.0 : std::exp(double(x[n * D + j]) - m) / s;
    }
}

template <typename T> void softmax_backward_ref(double* dx, const T* dout, const T* x, int64_t N, int64_t D) {
    std::vector<double> y(static_cast<size_t>(N * D));
    softmax_ref<T>(y.data(), x, N, D);
    for (int64_t n = 0; n < N; ++n) {
        double dot = 0;
        for (int64_t j = 0; j < D; ++j) dot += double(dout[n * D + j]) * y[size_t(n * D + j)];
        for (int64_t j = 0; j < D; ++j) dx[n * D + j] = y[size_t(n * D + j)] * (double(dout[n * D + j]) - dot);
    }
}

namespace {

struct SoftmaxBackward : autograd::Node {
    Tensor y; // the forward's output, contiguous (N, D)
    int64_t N = 0, D = 0;
    std::string name() const override { return "SoftmaxBackward"; }
    void release() override { y = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dout = grads[0].contiguous();
        Device dev = dout.device();
        Tensor dx = Tensor::empty(y.shape(), dout.options());
        dispatch_float(dout.dtype(), "softmax", [&]<typename T>() {
            if (dev.is_cpu()) {
                softmax_backward_cpu<T>(dx.data<T>(), dout.data<T>(), y.data<T>(), N, D);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                             cuda::softmax_backward<T>(dx.data<T>(), dout.data<T>(), y.data<T>(), N, D));
            }
        });
        return {dx};
    }
};

} // namespace

Tensor softmax(const Tensor& x_in) {
    const char* op = "softmax";
    check_float(op, "x", x_in);
    MG_CHECK(x_in.dim() >= 1, "{}: x is {}, expected at least 1 dim (softmax runs over the last)", op, x_in.desc());
    int64_t D = x_in.size(-1), N = D > 0 ? x_in.numel() / D : 0;
    Tensor x = x_in.detach().contiguous();
    Device dev = x.device();
    Tensor out = Tensor::empty(x.shape(), x.options());
    dispatch_float(x.dtype(), op, [&]<typename T>() {
        if (dev.is_cpu()) {
            softmax_forward_cpu<T>(out.data<T>(), x.data<T>(), N, D);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index); cuda::softmax_forward<T>(out.data<T>(), x.data<T>(), N, D));
        }
    });
    autograd::record<SoftmaxBackward>({x_in}, {out}, [&](SoftmaxBackward& n) {
        n.y = out.detach();
        n.N = N;
        n.D = D;
    });
    return out;
}

#define MG_INST(T)                                                                 \
    template void softmax_forward_cpu<T>(T*, const T*, int64_t, int64_t);          \
    template void softmax_backward_cpu<T>(T*, const T*, const T*, int64_t, int64_t); \
    template void softmax_ref<T>(double*, const T*, int64_t, int64_t);               \
    template void softmax_backward_ref<T>(double*, const T*, const T*, int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg
