// ops/rope.cpp: see ops/rope.h for shapes and derivatives.
#include "ops/rope.h"

#include <cmath>
#include <vector>

#include "autograd/node.h"
#include "common/rope.h"
#include "cuda/rope.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"

namespace mg {

template <typename T>
void rope_cpu(T* out, const T* x, int64_t N, int64_t L, int64_t Dh, int64_t rotary_dims, double base,
              int64_t pos_offset, double sign) {
    // cos and sin of each (position, pair) once, not once per (row, element): the angles are
    // common/rope.h's, the rotation too
    const int64_t h = rotary_dims / 2;
    std::vector<double> cs(size_t(L * h)), sn(size_t(L * h));
    for (int64_t l = 0; l < L; ++l)
        for (int64_t i = 0; i < h; ++i) {
            const double a = double(pos_offset + l) * rope_inv_freq(i, rotary_dims, base);
            cs[size_t(l * h + i)] = std::cos(a);
            sn[size_t(l * h + i)] = sign * std::sin(a);
        }
#pragma omp parallel for if (N * L * Dh > kParallelGrain)
    for (int64_t row = 0; row < N * L; ++row) {
        const int64_t l = row % L;
        const T* xr = x + row * Dh;
        T* yr = out + row * Dh;
        for (int64_t j = 0; j < rotary_dims; ++j) {
            const size_t at = size_t(l * h + (j < h ? j : j - h));
            yr[j] = rope_rotate(xr, j, h, cs[at], sn[at]);
        }
        for (int64_t j = rotary_dims; j < Dh; ++j) yr[j] = xr[j];
    }
}

template <typename T>
void rope_ref(double* out, const T* x, int64_t N, int64_t L, int64_t Dh, int64_t rotary_dims, double base,
              int64_t pos_offset) {
    const int64_t h = rotary_dims / 2;
    const size_t n = static_cast<size_t>(rotary_dims);
    std::vector<double> cs(n), sn(n), half(n);
    for (int64_t row = 0; row < N * L; ++row) {
        const double t = double(pos_offset + row % L);
        const T* xr = x + row * Dh;
        for (int64_t j = 0; j < rotary_dims; ++j) { // cos, sin = cat(freqs, freqs)
            double freq = t / std::pow(base, double(2 * (j % h)) / double(rotary_dims));
            cs[size_t(j)] = std::cos(freq);
            sn[size_t(j)] = std::sin(freq);
            half[size_t(j)] = j < h ? -double(xr[j + h]) : double(xr[j - h]); // rotate_half: cat(-x2, x1)
        }
        for (int64_t j = 0; j < Dh; ++j)
            out[row * Dh + j] = j < rotary_dims ? double(xr[j]) * cs[size_t(j)] + half[size_t(j)] * sn[size_t(j)]
                                                : double(xr[j]);
    }
}

namespace {

// x contiguous (N, L, Dh) -> R(sign a) x, on x's device.
Tensor rotate(const Tensor& x, int64_t rotary_dims, double base, int64_t pos_offset, double sign) {
    const int64_t Dh = x.size(-1), L = x.size(-2), N = L * Dh > 0 ? x.numel() / (L * Dh) : 0;
    Tensor out = Tensor::empty(x.shape(), x.options());
    dispatch_float(x.dtype(), "rope", [&]<typename T>() {
        if (x.device().is_cpu()) {
            rope_cpu<T>(out.data<T>(), x.data<T>(), N, L, Dh, rotary_dims, base, pos_offset, sign);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(x.device().index);
                         cuda::rope<T>(out.data<T>(), x.data<T>(), N, L, Dh, rotary_dims, base, pos_offset, sign));
        }
    });
    return out;
}

struct RopeBackward : autograd::Node {
    int64_t rotary_dims = 0, pos_offset = 0;
    double base = 0;
    std::string name() const override { return "RopeBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        return {rotate(grads[0].contiguous(), rotary_dims, base, pos_offset, -1.0)};
    }
};

} // namespace

Tensor rope(const Tensor& x, int64_t rotary_dims, double base, int64_t pos_offset) {
    check_float("rope", "x", x);
    MG_CHECK(x.dim() >= 2, "rope: x is {}, expected (..., L, Dh) with at least 2 dims", x.desc());
    const int64_t Dh = x.size(-1);
    MG_CHECK(rotary_dims >= 0 && rotary_dims <= Dh && rotary_dims % 2 == 0,
             "rope: rotary_dims = {} for x {}, expected an even number in [0, Dh = {}]", rotary_dims, x.desc(), Dh);
    MG_CHECK(std::isfinite(base) && base > 0, "rope: base = {} for x {}, expected a finite base > 0", base, x.desc());
    MG_CHECK(pos_offset >= 0, "rope: pos_offset = {} for x {}, expected >= 0", pos_offset, x.desc());
    Tensor out = rotate(x.detach().contiguous(), rotary_dims, base, pos_offset, 1.0);
    autograd::record<RopeBackward>({x}, {out}, [&](RopeBackward& n) {
        n.rotary_dims = rotary_dims;
        n.base = base;
        n.pos_offset = pos_offset;
    });
    return out;
}

#define MG_INST(T)                                                                                             \
    template void rope_cpu<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, double, int64_t, double);      \
    template void rope_ref<T>(double*, const T*, int64_t, int64_t, int64_t, int64_t, double, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg
