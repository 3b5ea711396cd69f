// cuda/attention.h: CUDA launchers for ops/attention.h (contiguous (BH, L, Dh) operands; same
// meaning as the CPU kernels).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mg::cuda {

// The fused kernels keep a head vector's columns in registers, 16 threads to a row.
inline constexpr int64_t kAttentionMaxHeadDim = 128;

// out (BH, Lq, Dh) and lse (BH, Lq). Writes (=).
template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH, int64_t Lq, int64_t Lk,
                       int64_t Dh, bool causal, double scale);

// Bytes of scratch attention_backward needs (D_i = dout_i . out_i per query).
size_t attention_backward_workspace(int64_t BH, int64_t Lq, size_t elem_size);

// dq, dk, dv. Writes (=) all three. `workspace` has attention_backward_workspace(...) bytes.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, void* workspace, int64_t BH, int64_t Lq, int64_t Lk, int64_t Dh, bool causal,
                        double scale);

} // namespace mg::cuda
