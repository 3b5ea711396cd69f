// cuda/fft_conv.h: CUDA launchers for ops/fft_conv.h: a fused block-FFT path (f32, n <= 8192, and
// n = 16384 with L, K <= 8192) and a cuFFT path (everything else). Same formulas as the CPU kernels; contiguous inputs, bias may
// be null; default stream.
#pragma once
#include <cstdint>

namespace mg::cuda {

// Which implementation runs: automatic (fused where it applies, else cuFFT; the environment
// variable MG_FFT_CONV_PATH=fused|cufft overrides it where the fused path is supported), or one
// forced (tests, benchmarks). Forcing `fused` where it is not supported throws.
enum class FftConvPath { automatic, fused, cufft };

// True when the fused path covers this size and type: f32, and n = fft_conv_size(L, K) <= 8192 or
// n = 16384 with L <= 8192 and K <= 8192.
template <typename T> bool fft_conv_fused_supported(int64_t L, int64_t K);

// Scratch (elements of T) for fft_conv_forward (backward = false) or fft_conv_backward on the
// current device, for the same `path`: the time-major buffers, the spectra, the twiddles and (for
// cuFFT) its work area. Creates (and caches) the cuFFT plans it needs. The caller allocates it with
// Tensor::empty.
template <typename T>
int64_t fft_conv_work(int64_t B, int64_t L, int64_t D, int64_t K, bool backward,
                      FftConvPath path = FftConvPath::automatic);

// y (B,L,D) = [silu](conv(x, weight (D,K)) + bias) by FFT. Writes (=).
template <typename T>
void fft_conv_forward(T* y, T* work, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                      int64_t K, bool silu, FftConvPath path = FftConvPath::automatic);
// dx (B,L,D), dweight (D,K), dbias (D; may be null) from dy. Deterministic. Writes (=).
template <typename T>
void fft_conv_backward(T* dx, T* dweight, T* dbias, T* work, const T* dy, const T* x, const T* weight,
                       const T* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu,
                       FftConvPath path = FftConvPath::automatic);

} // namespace mg::cuda
