// cuda/embedding.h: CUDA launchers for ops/embedding.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mg::cuda {

// out (N, D) = weight (V, D)[ids (N)]. Writes (=). An id outside [0, V) gives a NaN row and is
// recorded in `error_word` (cuda/index_check.h).
template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* weight, int64_t N, int64_t V, int64_t D,
                       unsigned long long* error_word);

// Bytes of scratch embedding_backward needs for N positions, D columns of elem_size bytes.
size_t embedding_backward_workspace(int64_t N, int64_t D, size_t elem_size);

// dweight (V, D) = sum of dout (N, D) rows by id, in position order (deterministic). Writes (=)
// every element. `positions` holds 0..N-1 (the sort's payload); `workspace` has at least
// embedding_backward_workspace(N, D, sizeof(T)) bytes. Ids outside [0, V) are skipped.
template <typename T>
void embedding_backward(T* dweight, const T* dout, const int32_t* ids, const int32_t* positions,
                        void* workspace, int64_t N, int64_t V, int64_t D);

} // namespace mg::cuda
