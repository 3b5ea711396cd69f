// ops/fft_cpu.cpp: the CPU FFT of the FFT convolution (plans, Stockham radix-4/2 passes on split
// real and imaginary arrays, vectorised, an AVX2 + FMA build picked at run time) and dft_ref, the
// plain O(n^2) DFT it is tested against. ops/fft_conv.h documents the method.
#include <algorithm>
#include <cmath>
#include <complex>
#include <map>
#include <mutex>
#include <numbers>

#include <omp.h>

#include "ops/dispatch.h"
#include "ops/fft_conv.h"
#include "ops/vec_math.h"

namespace mg {

using cd = std::complex<double>;

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
    p.tw_re_f.assign(p.tw_re.begin(), p.tw_re.end());
    p.tw_im_f.assign(p.tw_im.begin(), p.tw_im.end());
    return plans.emplace(n, std::move(p)).first->second;
}

namespace {

// Butterfly j of a Stockham pass of radix R (see FftPlan): k = j mod Ns, its outputs from out + k
// at a stride of Ns.
template <int R, typename S>
[[gnu::always_inline]] inline void butterfly(S* __restrict yr, S* __restrict yi, const S* __restrict xr,
                                             const S* __restrict xi, const S* __restrict twr,
                                             const S* __restrict twi, int64_t q, int64_t Ns, int64_t j, int64_t k,
                                             int64_t out) {
    S ar[R], ai[R];
    ar[0] = xr[j];
    ai[0] = xi[j];
#pragma GCC unroll 4
    for (int r = 1; r < R; ++r) { // times w^(r k)
        const S vr = xr[j + r * q], vi = xi[j + r * q];
        const S wr = twr[(r - 1) * Ns + k], wi = twi[(r - 1) * Ns + k];
        ar[r] = vr * wr - vi * wi;
        ai[r] = vr * wi + vi * wr;
    }
    if constexpr (R == 2) {
        yr[out + k] = ar[0] + ar[1];
        yi[out + k] = ai[0] + ai[1];
        yr[out + k + Ns] = ar[0] - ar[1];
        yi[out + k + Ns] = ai[0] - ai[1];
    } else { // the 4-point DFT: X1 = (a0 - a2) - i (a1 - a3), X3 = (a0 - a2) + i (a1 - a3)
        const S t0r = ar[0] + ar[2], t0i = ai[0] + ai[2], t1r = ar[0] - ar[2], t1i = ai[0] - ai[2];
        const S t2r = ar[1] + ar[3], t2i = ai[1] + ai[3], t3r = ai[1] - ai[3], t3i = ar[3] - ar[1];
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
template <int R, typename S>
void fft_pass(S* __restrict yr, S* __restrict yi, const S* __restrict xr, const S* __restrict xi,
              const S* __restrict twr, const S* __restrict twi, int64_t n, int64_t Ns) {
    const int64_t q = n / R; // butterflies, and the distance between a butterfly's inputs
    if (Ns == 1) {
#pragma omp simd
        for (int64_t j = 0; j < q; ++j) butterfly<R, S>(yr, yi, xr, xi, twr, twi, q, 1, j, 0, j * R);
        return;
    }
    for (int64_t jb = 0; jb < q; jb += Ns) {
#pragma omp simd
        for (int64_t k = 0; k < Ns; ++k) butterfly<R, S>(yr, yi, xr, xi, twr, twi, q, Ns, jb + k, k, jb * R);
    }
}

template <typename S> using PassFn = void (*)(S*, S*, const S*, const S*, const S*, const S*, int64_t, int64_t);
#if MG_VM_HAVE_AVX2
// The same passes compiled for AVX2 + FMA (4 doubles or 8 floats a vector), picked at run time.
template <int R, typename S>
MG_VM_AVX2_FN void fft_pass_avx2(S* yr, S* yi, const S* xr, const S* xi, const S* twr, const S* twi, int64_t n,
                                 int64_t Ns) {
    fft_pass<R, S>(yr, yi, xr, xi, twr, twi, n, Ns);
}
#endif
template <typename S> PassFn<S> pass_fn(int R) {
#if MG_VM_HAVE_AVX2
    if (vm::use_avx2()) return R == 2 ? fft_pass_avx2<2, S> : fft_pass_avx2<4, S>;
#endif
    return R == 2 ? fft_pass<2, S> : fft_pass<4, S>;
}

} // namespace

// The passes of FftPlan, ping-ponging between (re, im) and tmp; the inverse is conj(FFT(conj(a))).
template <typename S> void fft_split(S* re, S* im, const FftPlan& plan, bool inverse, S* tmp) {
    const int64_t n = plan.n;
    if (n == 1) return;
    if (inverse)
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) im[i] = -im[i];
    S *xr = re, *xi = im, *yr = tmp, *yi = tmp + n;
    int64_t Ns = 1;
    size_t tw = 0;
    for (int R : plan.radix) {
        const S *twr = plan.tw_re_of<S>() + tw, *twi = plan.tw_im_of<S>() + tw;
        pass_fn<S>(R)(yr, yi, xr, xi, twr, twi, n, Ns);
        std::swap(xr, yr);
        std::swap(xi, yi);
        tw += size_t((R - 1) * Ns);
        Ns *= R;
    }
    if (xr != re) { // an odd number of passes: the result is in tmp
        std::copy_n(xr, n, re);
        std::copy_n(xi, n, im);
    }
    if (inverse)
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) im[i] = -im[i];
}

template void fft_split<float>(float*, float*, const FftPlan&, bool, float*);
template void fft_split<double>(double*, double*, const FftPlan&, bool, double*);

void fft_cpu(cd* a, const FftPlan& plan, bool inverse) {
    const int64_t n = plan.n;
    std::vector<double> buf(static_cast<size_t>(4 * n));
    double *re = buf.data(), *im = re + n;
    for (int64_t i = 0; i < n; ++i) {
        re[i] = a[i].real();
        im[i] = a[i].imag();
    }
    fft_split(re, im, plan, inverse, im + n);
    for (int64_t i = 0; i < n; ++i) a[i] = cd(re[i], im[i]);
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

} // namespace mg
