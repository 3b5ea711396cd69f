// ops/fft_conv.cpp: see ops/fft_conv.h for the method and the derivatives.
#include "ops/fft_conv.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <numbers>

#include "autograd/node.h"
#include "cuda/fft_conv.h"
#include "cuda/runtime.h"
#include "ops/conv1d.h"
#include "ops/dispatch.h"
#include "ops/vec_math.h"

namespace mg {

using cd = std::complex<double>;

int64_t fft_conv_size(int64_t L, int64_t K) {
    int64_t need = std::max<int64_t>(2, L + K - 1), n = 1;
    while (n < need) n <<= 1;
    return n;
}

// ---- the CPU FFT ----------------------------------------------------------------------------
const FftPlan& fft_plan(int64_t n) {
    static std::mutex mu;
    static std::map<int64_t, FftPlan> plans; // nodes never move: references stay valid
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = plans.find(n); it != plans.end()) return it->second;
    MG_ASSERT(n >= 1 && (n & (n - 1)) == 0);
    FftPlan p;
    p.n = n;
    int bits = 0;
    while ((int64_t(1) << bits) < n) ++bits;
    for (int i = 0; i < bits / 2; ++i) p.radix.push_back(4);
    if (bits % 2 == 1) p.radix.push_back(2); // last, where its blocks are long (Ns = n/2)
    int64_t Ns = 1;
    for (int R : p.radix) {
        for (int r = 1; r < R; ++r)
            for (int64_t k = 0; k < Ns; ++k) {
                // w^(r k) = exp(-2 pi i r k / (Ns R)); the angle's numerator reduced exactly first
                const int64_t m = (r * k) % (Ns * R);
                const std::complex<double> w = std::polar(1.0, -2.0 * std::numbers::pi * double(m) / double(Ns * R));
                p.tw_re.push_back(w.real());
                p.tw_im.push_back(w.imag());
            }
        Ns *= R;
    }
    return plans.emplace(n, std::move(p)).first->second;
}

namespace {

// Butterfly j of a Stockham pass of radix R (see FftPlan): k = j mod Ns, its outputs from out + k
// at a stride of Ns.
template <int R>
[[gnu::always_inline]] inline void butterfly(double* __restrict yr, double* __restrict yi,
                                             const double* __restrict xr, const double* __restrict xi,
                                             const double* __restrict twr, const double* __restrict twi, int64_t q,
                                             int64_t Ns, int64_t j, int64_t k, int64_t out) {
    double ar[R], ai[R];
    ar[0] = xr[j];
    ai[0] = xi[j];
#pragma GCC unroll 4
    for (int r = 1; r < R; ++r) { // times w^(r k)
        const double vr = xr[j + r * q], vi = xi[j + r * q];
        const double wr = twr[(r - 1) * Ns + k], wi = twi[(r - 1) * Ns + k];
        ar[r] = vr * wr - vi * wi;
        ai[r] = vr * wi + vi * wr;
    }
    if constexpr (R == 2) {
        yr[out + k] = ar[0] + ar[1];
        yi[out + k] = ai[0] + ai[1];
        yr[out + k + Ns] = ar[0] - ar[1];
        yi[out + k + Ns] = ai[0] - ai[1];
    } else { // the 4-point DFT: X1 = (a0 - a2) - i (a1 - a3), X3 = (a0 - a2) + i (a1 - a3)
        const double t0r = ar[0] + ar[2], t0i = ai[0] + ai[2], t1r = ar[0] - ar[2], t1i = ai[0] - ai[2];
        const double t2r = ar[1] + ar[3], t2i = ai[1] + ai[3], t3r = ai[1] - ai[3], t3i = ar[3] - ar[1];
        yr[out + k] = t0r + t2r;
        yi[out + k] = t0i + t2i;
        yr[out + k + Ns] = t1r + t3r;
        yi[out + k + Ns] = t1i + t3i;
        yr[out + k + 2 * Ns] = t0r - t2r;
        yi[out + k + 2 * Ns] = t0i - t2i;
        yr[out + k + 3 * Ns] = t1r - t3r;
        yi[out + k + 3 * Ns] = t1i - t3i;
    }
}

// One pass from (xr, xi) into (yr, yi). For Ns > 1 the inner loop runs over the Ns butterflies of
// a block (j - k): inputs, outputs and twiddles contiguous in k, so it vectorises. The first pass
// (Ns = 1) has one butterfly per block, so it loops over the blocks instead.
template <int R>
void fft_pass(double* __restrict yr, double* __restrict yi, const double* __restrict xr, const double* __restrict xi,
              const double* __restrict twr, const double* __restrict twi, int64_t n, int64_t Ns) {
    const int64_t q = n / R; // butterflies, and the distance between a butterfly's inputs
    if (Ns == 1) {
#pragma omp simd
        for (int64_t j = 0; j < q; ++j) butterfly<R>(yr, yi, xr, xi, twr, twi, q, 1, j, 0, j * R);
        return;
    }
    for (int64_t jb = 0; jb < q; jb += Ns) {
#pragma omp simd
        for (int64_t k = 0; k < Ns; ++k) butterfly<R>(yr, yi, xr, xi, twr, twi, q, Ns, jb + k, k, jb * R);
    }
}

using PassFn = void (*)(double*, double*, const double*, const double*, const double*, const double*, int64_t,
                        int64_t);
#if MG_VM_HAVE_AVX2
// The same passes compiled for AVX2 + FMA (4 doubles a vector), picked at run time.
MG_VM_AVX2_FN void fft_pass2_avx2(double* yr, double* yi, const double* xr, const double* xi, const double* twr,
                                  const double* twi, int64_t n, int64_t Ns) {
    fft_pass<2>(yr, yi, xr, xi, twr, twi, n, Ns);
}
MG_VM_AVX2_FN void fft_pass4_avx2(double* yr, double* yi, const double* xr, const double* xi, const double* twr,
                                  const double* twi, int64_t n, int64_t Ns) {
    fft_pass<4>(yr, yi, xr, xi, twr, twi, n, Ns);
}
#endif
PassFn pass_fn(int R) {
#if MG_VM_HAVE_AVX2
    if (vm::use_avx2()) return R == 2 ? fft_pass2_avx2 : fft_pass4_avx2;
#endif
    return R == 2 ? fft_pass<2> : fft_pass<4>;
}

} // namespace

// The passes of FftPlan on split real and imaginary arrays (a thread's scratch, kept across calls),
// ping-ponging between two pairs. The inverse is conj(FFT(conj(a))).
void fft_cpu(cd* a, const FftPlan& plan, bool inverse) {
    const int64_t n = plan.n;
    if (n == 1) return;
    thread_local std::vector<double> scratch;
    if (scratch.size() < size_t(4 * n)) scratch.resize(size_t(4 * n));
    double *xr = scratch.data(), *xi = xr + n, *yr = xi + n, *yi = yr + n;
    const double sign = inverse ? -1.0 : 1.0;
    for (int64_t i = 0; i < n; ++i) {
        xr[i] = a[i].real();
        xi[i] = sign * a[i].imag();
    }
    int64_t Ns = 1;
    size_t tw = 0;
    for (int R : plan.radix) {
        const double *twr = plan.tw_re.data() + tw, *twi = plan.tw_im.data() + tw;
        pass_fn(R)(yr, yi, xr, xi, twr, twi, n, Ns);
        std::swap(xr, yr);
        std::swap(xi, yi);
        tw += size_t((R - 1) * Ns);
        Ns *= R;
    }
    for (int64_t i = 0; i < n; ++i) a[i] = cd(xr[i], sign * xi[i]);
}

void dft_ref(cd* out, const cd* in, int64_t n, bool inverse) {
    double sign = inverse ? 1.0 : -1.0;
    for (int64_t f = 0; f < n; ++f) {
        cd acc = 0;
        for (int64_t t = 0; t < n; ++t) // (f t) mod n keeps the angle small and exact
            acc += in[t] * std::polar(1.0, sign * 2.0 * std::numbers::pi * double((f * t) % n) / double(n));
        out[f] = acc;
    }
}

// ---- CPU kernels ----------------------------------------------------------------------------
namespace {

// H = FFT of the flipped, zero-padded kernel of channel d: h[j] = w[d, K-1-j].
template <typename T> void kernel_spectrum(cd* H, const T* weight, int64_t d, int64_t K, const FftPlan& plan) {
    std::fill_n(H, plan.n, cd(0));
    for (int64_t j = 0; j < K; ++j) H[j] = double(weight[d * K + K - 1 - j]);
    fft_cpu(H, plan, false);
}

// z[t] = src[b,t,d] + i src[b+1,t,d] for t < L (the second row only if it exists), 0 beyond.
template <typename T>
void load_pair(cd* z, const T* src, int64_t b, bool two, int64_t L, int64_t D, int64_t d, int64_t n) {
    std::fill_n(z, n, cd(0));
    for (int64_t t = 0; t < L; ++t)
        z[t] = cd(double(src[(b * L + t) * D + d]), two ? double(src[((b + 1) * L + t) * D + d]) : 0.0);
}

} // namespace

template <typename T>
void fft_conv_forward_cpu(T* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                          int64_t K, bool silu) {
    const int64_t n = fft_conv_size(L, K);
    const FftPlan& plan = fft_plan(n);
    const double inv_n = 1.0 / double(n);
#pragma omp parallel for schedule(static) if (B * D * n > kParallelGrain)
    for (int64_t d = 0; d < D; ++d) {
        std::vector<cd> H(static_cast<size_t>(n)), z(static_cast<size_t>(n));
        kernel_spectrum(H.data(), weight, d, K, plan);
        const double bv = bias ? double(bias[d]) : 0.0;
        auto out = [&](double v) { return T(silu ? conv_silu(v) : v); };
        for (int64_t b = 0; b < B; b += 2) {
            const bool two = b + 1 < B;
            load_pair(z.data(), x, b, two, L, D, d, n);
            fft_cpu(z.data(), plan, false);
            for (int64_t f = 0; f < n; ++f) z[size_t(f)] *= H[size_t(f)];
            fft_cpu(z.data(), plan, true);
            for (int64_t t = 0; t < L; ++t) {
                y[(b * L + t) * D + d] = out(z[size_t(t)].real() * inv_n + bv);
                if (two) y[((b + 1) * L + t) * D + d] = out(z[size_t(t)].imag() * inv_n + bv);
            }
        }
    }
}

// Per channel d, rows in pairs: Zx = FFT(x pair); (silu) pre = IFFT(Zx H)/n + bias, gp = dy dsilu(pre);
// Zg = FFT(gp pair); S += Zg conj(Zx); dx pair = IFFT(Zg conj(H))/n. Then dh = Re IFFT(S)/n.
template <typename T>
void fft_conv_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, const T* bias,
                           int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    const int64_t n = fft_conv_size(L, K);
    const FftPlan& plan = fft_plan(n);
    const double inv_n = 1.0 / double(n);
#pragma omp parallel for schedule(static) if (B * D * n > kParallelGrain)
    for (int64_t d = 0; d < D; ++d) {
        std::vector<cd> H(static_cast<size_t>(n)), zx(static_cast<size_t>(n)), zg(static_cast<size_t>(n)), S(static_cast<size_t>(n), cd(0));
        kernel_spectrum(H.data(), weight, d, K, plan);
        const double bv = bias ? double(bias[d]) : 0.0;
        double dbias_sum = 0;
        for (int64_t b = 0; b < B; b += 2) {
            const bool two = b + 1 < B;
            load_pair(zx.data(), x, b, two, L, D, d, n);
            fft_cpu(zx.data(), plan, false);
            load_pair(zg.data(), dy, b, two, L, D, d, n);
            if (silu) {
                std::vector<cd> pre(static_cast<size_t>(n));
                for (int64_t f = 0; f < n; ++f) pre[size_t(f)] = zx[size_t(f)] * H[size_t(f)];
                fft_cpu(pre.data(), plan, true);
                for (int64_t t = 0; t < L; ++t) {
                    cd p = pre[size_t(t)] * inv_n + cd(bv, bv), g = zg[size_t(t)];
                    zg[size_t(t)] = cd(g.real() * conv_dsilu(p.real()), g.imag() * conv_dsilu(p.imag()));
                }
            }
            for (int64_t t = 0; t < L; ++t) dbias_sum += zg[size_t(t)].real() + zg[size_t(t)].imag();
            fft_cpu(zg.data(), plan, false);
            for (int64_t f = 0; f < n; ++f) {
                S[size_t(f)] += zg[size_t(f)] * std::conj(zx[size_t(f)]);
                zg[size_t(f)] *= std::conj(H[size_t(f)]);
            }
            fft_cpu(zg.data(), plan, true);
            for (int64_t t = 0; t < L; ++t) {
                dx[(b * L + t) * D + d] = T(zg[size_t(t)].real() * inv_n);
                if (two) dx[((b + 1) * L + t) * D + d] = T(zg[size_t(t)].imag() * inv_n);
            }
        }
        fft_cpu(S.data(), plan, true);
        for (int64_t k = 0; k < K; ++k) dweight[d * K + k] = T(S[size_t(K - 1 - k)].real() * inv_n);
        if (dbias) dbias[d] = T(dbias_sum);
    }
}

// ---- the op ---------------------------------------------------------------------------------
namespace {

struct FftConvBackward : autograd::Node {
    Tensor x, weight, bias; // contiguous, detached; bias undefined when there is none
    bool silu = false;
    bool need_x = false, need_w = false, need_b = false;
    std::string name() const override { return "FftCausalConvBackward"; }
    void release() override { x = Tensor(); weight = Tensor(); bias = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dy = grads[0].contiguous();
        int64_t B = x.size(0), L = x.size(1), D = x.size(2), K = weight.size(1);
        Tensor dx = Tensor::empty(x.shape(), x.options());
        Tensor dw = Tensor::zeros(weight.shape(), weight.options());
        Tensor db = bias.defined() ? Tensor::zeros(bias.shape(), bias.options()) : Tensor();
        if (x.numel() > 0) {
            dispatch_float(x.dtype(), "fft_causal_conv", [&]<typename T>() {
                T* pdb = db.defined() ? db.data<T>() : nullptr;
                const T* pb = bias.defined() ? bias.data<T>() : nullptr;
                if (x.device().is_cpu()) {
                    fft_conv_backward_cpu<T>(dx.data<T>(), dw.data<T>(), pdb, dy.data<T>(), x.data<T>(),
                                             weight.data<T>(), pb, B, L, D, K, silu);
                } else {
                    MG_CUDA_ONLY(
                        cuda::DeviceGuard g(x.device().index);
                        Tensor work = Tensor::empty({cuda::fft_conv_work<T>(B, L, D, K, true)}, x.options());
                        cuda::fft_conv_backward<T>(dx.data<T>(), dw.data<T>(), pdb, work.data<T>(), dy.data<T>(),
                                                   x.data<T>(), weight.data<T>(), pb, B, L, D, K, silu));
                }
            });
        }
        return {need_x ? dx : Tensor(), need_w ? dw : Tensor(), need_b ? db : Tensor()};
    }
};

} // namespace

Tensor fft_causal_conv(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu) {
    check_causal_conv_args("fft_causal_conv", x, weight, bias);
    Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
    Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
    int64_t B = xc.size(0), L = xc.size(1), D = xc.size(2), K = wc.size(1);
    Tensor y = Tensor::empty(xc.shape(), xc.options());
    if (y.numel() > 0) {
        dispatch_float(xc.dtype(), "fft_causal_conv", [&]<typename T>() {
            const T* pb = bc.defined() ? bc.data<T>() : nullptr;
            if (xc.device().is_cpu()) {
                fft_conv_forward_cpu<T>(y.data<T>(), xc.data<T>(), wc.data<T>(), pb, B, L, D, K, silu);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(xc.device().index);
                             Tensor work = Tensor::empty({cuda::fft_conv_work<T>(B, L, D, K, false)}, xc.options());
                             cuda::fft_conv_forward<T>(y.data<T>(), work.data<T>(), xc.data<T>(), wc.data<T>(), pb,
                                                       B, L, D, K, silu));
            }
        });
    }
    autograd::record<FftConvBackward>({x, weight, bias}, {y}, [&](FftConvBackward& n) {
        n.x = xc;
        n.weight = wc;
        n.bias = bc;
        n.silu = silu;
        n.need_x = x.requires_grad();
        n.need_w = weight.requires_grad();
        n.need_b = bias.defined() && bias.requires_grad();
    });
    return y;
}

bool long_conv_uses_fft(int64_t L, int64_t K, LongConvMode mode) {
    switch (mode) {
    case LongConvMode::direct: return false;
    case LongConvMode::fft: return true;
    default: return !(K <= 64 || K * L <= 32768);
    }
}

Tensor long_conv(const Tensor& x, const Tensor& weight, const Tensor& bias, LongConvMode mode, bool silu) {
    check_causal_conv_args("long_conv", x, weight, bias);
    if (long_conv_uses_fft(x.size(1), weight.size(1), mode)) return fft_causal_conv(x, weight, bias, silu);
    return causal_conv1d(x, weight, bias, silu);
}

#define MG_INST(T)                                                                                        \
    template void fft_conv_forward_cpu<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,     \
                                          int64_t, bool);                                                 \
    template void fft_conv_backward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t,    \
                                           int64_t, int64_t, int64_t, bool);
MG_INST(float)
MG_INST(double)

} // namespace mg
