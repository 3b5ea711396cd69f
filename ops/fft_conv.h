// ops/fft_conv.h: the causal depthwise convolution computed by FFT (the global-selection long
// conv of SPEC §2), and causal_conv, which picks the direct or the FFT path.
//
// Shapes and function: exactly causal_conv1d's (ops/conv1d.h): x (B, L, D) channels-last,
// weight (D, K) (any K >= 1; K > L is allowed), bias (D) or undefined, optional fused SiLU;
//   pre[b,t,d] = bias[d] + sum_k w[d,k] x[b, t-(K-1)+k, d],   y = silu(pre) or pre.
//
// Method. With the flipped kernel h_d[j] = w[d, K-1-j] the conv is the causal convolution
// pre = h * x (+ bias). Zero-pad x and h to n = the smallest power of two >= L + K - 1 (so the
// circular convolution of length n equals the linear one on t < L), transform, multiply,
// transform back, take the first L:
//   pre[b,:,d] = IFFT( FFT(x[b,:,d]) FFT(h_d) )[0:L] / n + bias[d]
//
// Derivatives (g = dL/dy; gp = g dsilu(pre) with silu, pre recomputed by one more inverse FFT
// from the spectra the backward needs anyway, nothing saved; gp = g without):
//   dx[b,:,d] = IFFT( FFT(gp[b,:,d]) conj(FFT(h_d)) )[0:L] / n     (correlation with h: gp at
//               t >= L is 0 and n >= L + K - 1, so nothing wraps around)
//   dh_d      = IFFT( sum_b FFT(gp[b,:,d]) conj(FFT(x[b,:,d])) )[0:K] / n,   dw[d,k] = dh_d[K-1-k]
//   dbias[d]  = sum_{b,t} gp[b,t,d]
// Everything is summed in a fixed order (deterministic on both devices).
//
// CPU: our own FFT (fft_split) in the tensor's precision (float for f32, double for f64):
// Stockham radix 4 on separate real and imaginary arrays, so the passes vectorise, with twiddle
// tables precomputed once per size (fft_plan). Two real rows b, b+1 of one channel share one
// complex transform (x_b + i x_{b+1}): h is real, so the real and imaginary parts of the result
// are the two rows' outputs; and Re IFFT(sum Zg conj(Zx)) is exactly the sum over both rows of
// the cross-correlations. OpenMP over tiles of up to one cache line of adjacent channels (16 in
// f32): a tile's rows are gathered from and scattered to (B, L, D) a whole line per (b, t), and
// each thread owns whole channels, so its sums over b are sequential. GPU (cuda/fft_conv.cu, see
// there for layout and memory): f32 with n <= 8192 (and n = 16384 with L, K <= 8192) by fused
// kernels around our own block FFT (cuda/fft_block.cuh); f64 and larger n by cuFFT.
#pragma once
#include <complex>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/fft_conv.h"
#include "tensor/tensor.h"

namespace mg {

Tensor fft_causal_conv(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), bool silu = false);

// causal_conv: the same function by either path (the short conv and the long conv of global
// selection both run through it). automatic: direct when the kernel is short
// (K <= 64) or the direct work is small (K * L <= 32768, where three FFTs of n >= L + K - 1 points
// cost about as much), FFT otherwise.
enum class CausalConvMode { automatic, direct, fft };
Tensor causal_conv(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                 CausalConvMode mode = CausalConvMode::automatic, bool silu = false);
bool causal_conv_uses_fft(int64_t L, int64_t K, CausalConvMode mode);


// ---- the CPU FFT ----------------------------------------------------------------------------
// Stockham autosort passes (no bit reversal): radix 4, then one radix-2 pass when log2 n is odd.
// Pass s has radix R and Ns = the product of the radices before it; its butterfly j (< n/R) reads
// the points j + r n/R, multiplies point r by w^(r k) (w = exp(-2 pi i / (Ns R)), k = j mod Ns),
// takes their R-point DFT and writes output r to (j - k) R + k + r Ns. tw_re/tw_im hold each pass's
// w^(r k) for r = 1..R-1, k < Ns, one after another, so a pass reads them contiguously in k.
struct FftPlan {
    int64_t n = 1;                // a power of two
    std::vector<int> radix;       // per pass: 2 or 4
    std::vector<double> tw_re, tw_im;
    std::vector<float> tw_re_f, tw_im_f; // the same, rounded to float
    template <typename S> const S* tw_re_of() const {
        if constexpr (std::is_same_v<S, float>) return tw_re_f.data();
        else return tw_re.data();
    }
    template <typename S> const S* tw_im_of() const {
        if constexpr (std::is_same_v<S, float>) return tw_im_f.data();
        else return tw_im.data();
    }
};
// The plan for size n (a power of two), built once and cached (thread-safe).
const FftPlan& fft_plan(int64_t n);
// In-place unnormalised DFT of the split complex array (re, im)[0..n):
// a[f] = sum_t a[t] exp(-+2 pi i f t / n) (inverse: +). tmp: 2n values of scratch. S: float or
// double, the precision of every operation (the twiddles are computed in double and rounded).
template <typename S> void fft_split(S* re, S* im, const FftPlan& plan, bool inverse, S* tmp);
// The same on interleaved complex numbers (copies through split arrays; for tests and one-offs).
void fft_cpu(std::complex<double>* a, const FftPlan& plan, bool inverse);
// The reference: the O(n^2) sum above, any n. Writes out (=).
void dft_ref(std::complex<double>* out, const std::complex<double>* in, int64_t n, bool inverse);

// ---- kernels (contiguous inputs; bias may be null). The reference is causal_conv1d_ref. ----
// y (B,L,D) = [silu](conv(x, weight) + bias). Writes (=).
template <typename T>
void fft_conv_forward_cpu(T* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                          int64_t K, bool silu);
// dx (B,L,D), dweight (D,K), dbias (D; may be null) from dy (B,L,D). Writes (=).
template <typename T>
void fft_conv_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, const T* bias,
                           int64_t B, int64_t L, int64_t D, int64_t K, bool silu);

} // namespace mg
