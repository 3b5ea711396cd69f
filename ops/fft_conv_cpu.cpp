// ops/fft_conv_cpu.cpp: the CPU kernels of the FFT convolution (fft_conv_forward_cpu,
// fft_conv_backward_cpu): tiles of adjacent channels through ops/fft_cpu.cpp's transforms. The
// direct conv (ops/conv1d.cpp) computes the same function and is what they are tested against.
#include <algorithm>
#include <cmath>
#include <complex>
#include <map>
#include <mutex>
#include <numbers>

#include <omp.h>

#include "common/conv1d.h"
#include "ops/dispatch.h"
#include "ops/fft_conv.h"
#include "ops/vec_math.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
// The transforms run in the tensor's precision T (float for f32, as on the GPU and in torch.fft;
// double for f64, so gradcheck sees double-precision derivatives). Sums over the batch stay in T
// (the spectrum sum S) or double (dbias).
namespace {

// A task owns a tile of C adjacent channels, at most one 64-byte cache line of T: x, dy, y and dx
// are (B, L, D), so reading or writing the tile's C values of one (b, t) touches one line, where a
// channel at a time would touch a line per element and use 4 or 8 bytes of it. Fewer channels
// when there are not two tiles per thread.
template <typename T> int64_t tile_channels(int64_t D) {
    const int64_t line = 64 / int64_t(sizeof(T)), per_thread = D / (2 * int64_t(omp_get_max_threads()));
    return std::clamp<int64_t>(per_thread, 1, line);
}
constexpr int64_t kMaxTile = 16; // 64 bytes of float

// A tile's working rows: `rows` complex rows of n points as split arrays (row r: re(r), im(r)),
// then the 2n values fft_split ping-pongs through (tmp). Per thread and type, kept across calls.
template <typename T> struct TileRows {
    int64_t n = 0, rows = 0;
    T* base = nullptr;
    T* re(int64_t r) const { return base + 2 * r * n; }
    T* im(int64_t r) const { return base + (2 * r + 1) * n; }
    T* tmp() const { return base + 2 * rows * n; }
    static TileRows get(int64_t rows, int64_t n) {
        thread_local std::vector<T> buf;
        const size_t need = size_t((2 * rows + 2) * n);
        if (buf.size() < need) buf.resize(need);
        return TileRows{n, rows, buf.data()};
    }
};

// Rows row0 + c = H of channel d0 + c: the FFT of the flipped, zero-padded kernel, h[j] = w[d, K-1-j].
template <typename T>
void kernel_spectra(const TileRows<T>& Z, int64_t row0, const T* weight, int64_t d0, int64_t C, int64_t K,
                    const FftPlan& plan) {
    for (int64_t c = 0; c < C; ++c) {
        T *re = Z.re(row0 + c), *im = Z.im(row0 + c);
        std::fill_n(re, plan.n, T(0));
        std::fill_n(im, plan.n, T(0));
        for (int64_t j = 0; j < K; ++j) re[j] = weight[(d0 + c) * K + K - 1 - j];
        fft_split(re, im, plan, false, Z.tmp());
    }
}

// Rows row0 + c = src[b, t, d0 + c] + i src[b + 1, t, d0 + c] for t < L (the second row only if
// `two`), 0 beyond. By blocks of 8 steps: each (b, t) reads one line, each row gets 8 contiguous values.
template <typename T>
void gather_pair(const TileRows<T>& Z, int64_t row0, const T* src, int64_t b, bool two, int64_t L, int64_t D,
                 int64_t d0, int64_t C) {
    constexpr int64_t kStep = 8;
    T blk_re[kStep][kMaxTile], blk_im[kStep][kMaxTile];
    for (int64_t t0 = 0; t0 < L; t0 += kStep) {
        const int64_t nt = std::min(kStep, L - t0);
        for (int64_t i = 0; i < nt; ++i) {
            const T* p = src + (b * L + t0 + i) * D + d0;
            const T* q = two ? src + ((b + 1) * L + t0 + i) * D + d0 : p;
            for (int64_t c = 0; c < C; ++c) {
                blk_re[i][c] = p[c];
                blk_im[i][c] = two ? q[c] : T(0);
            }
        }
        for (int64_t c = 0; c < C; ++c) {
            T *re = Z.re(row0 + c) + t0, *im = Z.im(row0 + c) + t0;
            for (int64_t i = 0; i < nt; ++i) {
                re[i] = blk_re[i][c];
                im[i] = blk_im[i][c];
            }
        }
    }
    for (int64_t c = 0; c < C; ++c) {
        std::fill(Z.re(row0 + c) + L, Z.re(row0 + c) + Z.n, T(0));
        std::fill(Z.im(row0 + c) + L, Z.im(row0 + c) + Z.n, T(0));
    }
}

// dst[b, t, d0 + c] (and dst[b + 1, ...] when `two`) = f(re (im) of row row0 + c at t, c), t < L.
// By blocks of 8 steps, like gather_pair: rows read 8 contiguous values, each (b, t) writes one line.
template <typename T, typename F>
void scatter_pair(T* dst, const TileRows<T>& Z, int64_t row0, int64_t b, bool two, int64_t L, int64_t D, int64_t d0,
                  int64_t C, F&& f) {
    constexpr int64_t kStep = 8;
    T blk_re[kStep][kMaxTile], blk_im[kStep][kMaxTile];
    for (int64_t t0 = 0; t0 < L; t0 += kStep) {
        const int64_t nt = std::min(kStep, L - t0);
        for (int64_t c = 0; c < C; ++c) {
            const T *re = Z.re(row0 + c) + t0, *im = Z.im(row0 + c) + t0;
            for (int64_t i = 0; i < nt; ++i) {
                blk_re[i][c] = re[i];
                blk_im[i][c] = im[i];
            }
        }
        for (int64_t i = 0; i < nt; ++i) {
            T* p = dst + (b * L + t0 + i) * D + d0;
            for (int64_t c = 0; c < C; ++c) p[c] = f(blk_re[i][c], c);
            if (two) {
                T* q = dst + ((b + 1) * L + t0 + i) * D + d0;
                for (int64_t c = 0; c < C; ++c) q[c] = f(blk_im[i][c], c);
            }
        }
    }
}

// z *= h (or z *= conj(h)), split complex, n points.
template <typename T>
void mul_spectrum(T* __restrict zr, T* __restrict zi, const T* __restrict hr, const T* __restrict hi, int64_t n,
                  bool conj_h) {
    const T s = conj_h ? T(-1) : T(1);
#pragma omp simd
    for (int64_t f = 0; f < n; ++f) {
        const T ar = zr[f], ai = zi[f], br = hr[f], bi = s * hi[f];
        zr[f] = ar * br - ai * bi;
        zi[f] = ar * bi + ai * br;
    }
}

} // namespace

// Per tile of C channels: the C kernel spectra, then per pair of rows (b, b+1): gather, and per
// channel FFT, times H, inverse FFT; scatter y.
template <typename T>
void fft_conv_forward_cpu(T* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                          int64_t K, bool silu) {
    const int64_t n = fft_conv_size(L, K);
    const FftPlan& plan = fft_plan(n);
    const T inv_n = T(1) / T(n);
    const int64_t C = tile_channels<T>(D), tiles = (D + C - 1) / C;
#pragma omp parallel for schedule(static) if (B * D * n > kParallelGrain)
    for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t d0 = tile * C, nc = std::min(C, D - d0);
        const TileRows<T> R = TileRows<T>::get(2 * C, n); // rows 0..C-1: H; C..2C-1: the pair of rows
        kernel_spectra(R, 0, weight, d0, nc, K, plan);
        for (int64_t b = 0; b < B; b += 2) {
            const bool two = b + 1 < B;
            gather_pair(R, C, x, b, two, L, D, d0, nc);
            for (int64_t c = 0; c < nc; ++c) {
                T *zr = R.re(C + c), *zi = R.im(C + c);
                fft_split(zr, zi, plan, false, R.tmp());
                mul_spectrum(zr, zi, R.re(c), R.im(c), n, false);
                fft_split(zr, zi, plan, true, R.tmp());
            }
            scatter_pair(y, R, C, b, two, L, D, d0, nc, [&](T v, int64_t c) {
                v = v * inv_n + (bias ? bias[d0 + c] : T(0));
                return silu ? conv_silu(v) : v;
            });
        }
    }
}

// Per tile of C channels and per pair of rows: Zx = FFT(x pair); (silu) pre = IFFT(Zx H)/n + bias,
// gp = dy dsilu(pre); Zg = FFT(gp pair); S += Zg conj(Zx); dx pair = IFFT(Zg conj(H))/n. Then per
// channel dh = Re IFFT(S)/n. Each channel's sums over b run in b order (deterministic).
template <typename T>
void fft_conv_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, const T* bias,
                           int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    const int64_t n = fft_conv_size(L, K);
    const FftPlan& plan = fft_plan(n);
    const T inv_n = T(1) / T(n);
    const int64_t C = tile_channels<T>(D), tiles = (D + C - 1) / C;
#pragma omp parallel for schedule(static) if (B * D * n > kParallelGrain)
    for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t d0 = tile * C, nc = std::min(C, D - d0);
        // rows 0..C-1: H; C..: S; 2C..: Zx; 3C..: Zg; 4C: pre (silu only)
        const TileRows<T> R = TileRows<T>::get(4 * C + 1, n);
        const int64_t rS = C, rX = 2 * C, rG = 3 * C, rP = 4 * C;
        kernel_spectra(R, 0, weight, d0, nc, K, plan);
        for (int64_t c = 0; c < nc; ++c) {
            std::fill_n(R.re(rS + c), n, T(0));
            std::fill_n(R.im(rS + c), n, T(0));
        }
        double dbias_sum[kMaxTile] = {};
        for (int64_t b = 0; b < B; b += 2) {
            const bool two = b + 1 < B;
            gather_pair(R, rX, x, b, two, L, D, d0, nc);
            gather_pair(R, rG, dy, b, two, L, D, d0, nc);
            for (int64_t c = 0; c < nc; ++c) {
                T *xr = R.re(rX + c), *xi = R.im(rX + c), *gr = R.re(rG + c), *gi = R.im(rG + c);
                fft_split(xr, xi, plan, false, R.tmp());
                if (silu) {
                    const T bv = bias ? bias[d0 + c] : T(0);
                    T *pr = R.re(rP), *pi = R.im(rP);
                    std::copy_n(xr, n, pr);
                    std::copy_n(xi, n, pi);
                    mul_spectrum(pr, pi, R.re(c), R.im(c), n, false);
                    fft_split(pr, pi, plan, true, R.tmp());
                    for (int64_t t = 0; t < L; ++t) {
                        gr[t] *= conv_dsilu(pr[t] * inv_n + bv);
                        gi[t] *= conv_dsilu(pi[t] * inv_n + bv);
                    }
                }
                for (int64_t t = 0; t < L; ++t) dbias_sum[c] += double(gr[t]) + double(gi[t]);
                fft_split(gr, gi, plan, false, R.tmp());
                // S += Zg conj(Zx), then Zg *= conj(H)
                T *sr = R.re(rS + c), *si = R.im(rS + c);
#pragma omp simd
                for (int64_t f = 0; f < n; ++f) {
                    sr[f] += gr[f] * xr[f] + gi[f] * xi[f];
                    si[f] += gi[f] * xr[f] - gr[f] * xi[f];
                }
                mul_spectrum(gr, gi, R.re(c), R.im(c), n, true);
                fft_split(gr, gi, plan, true, R.tmp());
            }
            scatter_pair(dx, R, rG, b, two, L, D, d0, nc, [&](T v, int64_t) { return v * inv_n; });
        }
        for (int64_t c = 0; c < nc; ++c) {
            T *sr = R.re(rS + c), *si = R.im(rS + c);
            fft_split(sr, si, plan, true, R.tmp());
            for (int64_t k = 0; k < K; ++k) dweight[(d0 + c) * K + k] = sr[K - 1 - k] * inv_n;
            if (dbias) dbias[d0 + c] = T(dbias_sum[c]);
        }
    }
}

#define MG_INST(T)                                                                                        \
    template void fft_conv_forward_cpu<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,     \
                                          int64_t, bool);                                                 \
    template void fft_conv_backward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t,    \
                                           int64_t, int64_t, int64_t, bool);
MG_INST(float)
MG_INST(double)

} // namespace mg
