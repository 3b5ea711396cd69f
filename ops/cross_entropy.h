// ops/cross_entropy.h: mean cross-entropy over labelled positions, fused and numerically stable;
// and its indexed form that builds logits only at the labelled positions (MQAR).
//
// cross_entropy(logits, targets, ignore_index):
// Shapes: logits (..., V) read as R rows (R = B*L for (B, L, V)); targets i32 (...) with
// logits' leading shape -> loss ().
//   m_r   = max_v z_rv,   lse_r = m_r + log sum_v exp(z_rv - m_r)      (saved by the forward)
//   loss  = (1/n) sum over labelled rows r of (lse_r - z_r,t_r),
//   n     = #{r : t_r != ignore_index};   loss = 0 when n = 0
// Derivative (g = dL/dloss, a scalar):
//   dz_rv = g/n (exp(z_rv - lse_r) - [v = t_r]) for labelled rows; 0 for ignored rows, and
//   everywhere when n = 0.
// n is counted on the device and read there by both kernels: no host sync on CUDA. Targets
// must be ignore_index or in [0, V): checked on the host for CPU; on CUDA a bad target makes the
// loss NaN and is raised by the next cross_entropy call on the device (cuda/index_check.h).
// The forward is one pass over each row (a running max and rescaled sum per thread, combined
// in a fixed tree order); the backward one more.
//
// cross_entropy_indexed(hidden, head_weight, positions, targets, ignore_index):
// Shapes: hidden (..., Dm) read as (Ntot, Dm) (Ntot = B*L); head_weight (V, Dm); positions i32
// (P) in [0, Ntot); targets i32 (P) -> loss ().
//   = cross_entropy(linear(hidden[positions], head_weight), targets, ignore_index)
// Only the P listed rows get logits: P x V memory and work instead of Ntot x V, which is what an
// MQAR batch wants (a few labelled positions per sequence). Built from embedding (the row
// gather, whose backward scatters dhidden back deterministically), linear and cross_entropy,
// so the gradients are theirs: dhidden is zero outside the listed rows (a row listed twice
// gets both contributions); dhead_weight = dlogits^T hidden[positions]. No host sync on CUDA.
// Positions out of range: host check on CPU; on CUDA the embedding's deferred check.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mg {

inline constexpr int32_t kIgnoreIndex = -100;

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = kIgnoreIndex);
Tensor cross_entropy_indexed(const Tensor& hidden, const Tensor& head_weight, const Tensor& positions,
                             const Tensor& targets, int32_t ignore_index = kIgnoreIndex);

// ---- kernels (logits contiguous (R, V)) -------------------------------------------------------
// loss[0] = the mean above, count[0] = n, lse[r] for every row. Targets must be valid (checked
// by the caller). Writes (=).
template <typename T>
void cross_entropy_forward_cpu(T* loss, T* count, T* lse, const T* logits, const int32_t* targets, int64_t R,
                               int64_t V, int32_t ignore_index);
// dlogits = the derivative above, with g = dloss[0] and n = count[0]. Writes (=) every element.
template <typename T>
void cross_entropy_backward_cpu(T* dlogits, const T* dloss, const T* logits, const int32_t* targets, const T* lse,
                                const T* count, int64_t R, int64_t V, int32_t ignore_index);

// Reference in double: the loss, and (when dlogits is non-null) dloss/dlogits for g = 1, from
// the textbook softmax with the row max subtracted.
template <typename T>
void cross_entropy_ref(double* loss, double* dlogits, const T* logits, const int32_t* targets, int64_t R, int64_t V,
                       int32_t ignore_index);

} // namespace mg
