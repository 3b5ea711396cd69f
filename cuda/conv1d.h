// cuda/conv1d.h: CUDA launchers for ops/conv1d.h (same arguments and formulas as the CPU
// kernels; contiguous inputs, bias may be null). All run on the default stream.
#pragma once
#include <cstdint>

namespace mg::cuda {

// y (B,L,D) = [silu](causal depthwise conv(x (B,L,D), weight (D,K)) + bias). Writes (=).
template <typename T>
void causal_conv1d_forward(T* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                           int64_t K, bool silu);

// Scratch the backward needs, in elements of T (the caller allocates it with Tensor::empty).
int64_t causal_conv1d_backward_work(int64_t B, int64_t L, int64_t D, int64_t K, bool silu);
// dx (B,L,D), dweight (D,K), dbias (D; may be null) from dy (B,L,D). work: the scratch above.
// Deterministic: per-tile partial sums of dweight/dbias go to `work` and are added in a fixed
// order by a second kernel. Writes (=).
template <typename T>
void causal_conv1d_backward(T* dx, T* dweight, T* dbias, T* work, const T* dy, const T* x, const T* weight,
                            const T* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu);

// One generation step: y (B,D); conv_state (B,D,K-1) in/out; x (B,D).
template <typename T>
void causal_conv1d_update(T* y, T* conv_state, const T* x, const T* weight, const T* bias, int64_t B, int64_t D,
                          int64_t K, bool silu);

} // namespace mg::cuda
