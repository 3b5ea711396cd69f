// ops/attention.h: scaled dot-product attention over (B, H, L, Dh), causal or not.
//
// Shapes: q (..., Lq, Dh), k and v (..., Lk, Dh) with the same leading dims (B, H): BH = their
// product independent problems. out (..., Lq, Dh). With causal = true, Lk >= Lq and the queries
// are the last Lq of the Lk positions (bottom-right alignment, as with a KV cache): query i sees
// keys j <= i + (Lk - Lq). scale defaults to 1 / sqrt(Dh).
//
//   S_ij   = scale q_i . k_j                (masked: -inf where j > i + Lk - Lq)
//   P_ij   = exp(S_ij - lse_i),  lse_i = log sum_j exp S_ij     (the forward saves lse, not P)
//   out_i  = sum_j P_ij v_j
//
// Derivatives (g_i = dL/dout_i):
//   dP_ij = g_i . v_j
//   D_i   = sum_j P_ij dP_ij = g_i . out_i
//   dS_ij = P_ij (dP_ij - D_i)
//   dq_i  = scale sum_j dS_ij k_j,   dk_j = scale sum_i dS_ij q_i,   dv_j = sum_i P_ij g_i
//
// Algorithm (both devices; flash attention): the forward walks key blocks for a block of
// queries, keeping per query a running max m, a running sum l and an unnormalised output, and
// rescaling them by exp(m_old - m_new) when the max grows (online softmax), so no L x L matrix
// is ever stored: memory O(BH L Dh). The backward recomputes P from q, k and lse block by
// block; dk and dv are owned by key blocks (each walks the query blocks that see it) and dq by
// query blocks (each walks its key blocks), so no element is written by two workers: no atomics,
// and the same inputs give bit-identical gradients. The CPU kernels run that algorithm with
// OpenMP over blocks; `attention_ref` is the naive one (the full S, softmax, P v) in double.
// On CUDA the fused kernels take Dh <= kAttentionMaxHeadDim (cuda/attention.h).
#pragma once
#include <cstdint>
#include <optional>

#include "tensor/tensor.h"

namespace mg {

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = true,
                 std::optional<double> scale = std::nullopt);

// ---- kernels (contiguous (BH, L, Dh) operands) ----------------------------------------------
// The blocked forward: out (BH, Lq, Dh) and lse (BH, Lq). Writes (=).
template <typename T>
void attention_forward_cpu(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH, int64_t Lq, int64_t Lk,
                           int64_t Dh, bool causal, double scale);
// The backward from the saved out and lse: dq, dk, dv. Writes (=) all three.
template <typename T>
void attention_backward_cpu(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                            const T* lse, int64_t BH, int64_t Lq, int64_t Lk, int64_t Dh, bool causal, double scale);

// References in double: the formulas above with the whole S row at once (lse may be null).
template <typename T>
void attention_ref(double* out, double* lse, const T* q, const T* k, const T* v, int64_t BH, int64_t Lq, int64_t Lk,
                   int64_t Dh, bool causal, double scale);
template <typename T>
void attention_backward_ref(double* dq, double* dk, double* dv, const T* dout, const T* q, const T* k, const T* v,
                            int64_t BH, int64_t Lq, int64_t Lk, int64_t Dh, bool causal, double scale);

} // namespace mg
