// cuda/fft_conv.h: CUDA launchers for ops/fft_conv.h (cuFFT). Same formulas as the CPU kernels;
// contiguous inputs, bias may be null; default stream.
#pragma once
#include <cstdint>

namespace mg::cuda {

// Scratch (elements of T) for fft_conv_forward (backward = false) or fft_conv_backward on the
// current device: the padded time-major buffers, the spectra and cuFFT's work area. Creates (and
// caches) the cuFFT plans it needs. The caller allocates it with Tensor::empty.
template <typename T> int64_t fft_conv_work(int64_t B, int64_t L, int64_t D, int64_t K, bool backward);

// y (B,L,D) = [silu](conv(x, weight (D,K)) + bias) by FFT. Writes (=).
template <typename T>
void fft_conv_forward(T* y, T* work, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                      int64_t K, bool silu);
// dx (B,L,D), dweight (D,K), dbias (D; may be null) from dy. Deterministic. Writes (=).
template <typename T>
void fft_conv_backward(T* dx, T* dweight, T* dbias, T* work, const T* dy, const T* x, const T* weight,
                       const T* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu);

} // namespace mg::cuda
