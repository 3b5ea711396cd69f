// cuda/copy.h: data movement and factory kernels (cuda/copy.cu).
#pragma once
#include <cstdint>

#include "common/bf16.h"
#include "tensor/indexing.h"

namespace mg::cuda {

// dst[di(i)] = D(src[si(i)]) for i < n: strided copy with dtype conversion.
template <typename D, typename S>
void copy_strided(D* dst, const StridedIndexer& di, const S* src, const StridedIndexer& si, int64_t n);
template <typename T> void fill(T* out, int64_t n, T value);       // out[i] = value
template <typename T> void arange(T* out, int64_t n);              // out[i] = i
// out[i] = lo + (hi - lo) * U(seed, offset + i) and N(seed, offset + i): tensor/random.h.
template <typename T> void uniform(T* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi);
template <typename T> void normal(T* out, int64_t n, uint64_t seed, uint64_t offset);

} // namespace mg::cuda
