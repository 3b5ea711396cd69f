// tensor/indexing.h: linear index -> storage offset for strided tensors, shared by the CPU and
// CUDA kernels (MG_HD marks code compiled for both). One helper serves every strided kernel:
// copy, cast, broadcast arithmetic.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MG_HD __host__ __device__ __forceinline__
#else
#define MG_HD inline
#endif

namespace mg {

constexpr int kMaxDims = 8;

// Walks a tensor of `ndim` dims in row-major order. offset(i) is the storage offset of the
// i-th element (relative to the tensor's own offset).
struct StridedIndexer {
    int ndim = 0;
    int64_t sizes[kMaxDims] = {};
    int64_t strides[kMaxDims] = {};

    MG_HD int64_t offset(int64_t linear) const {
        int64_t off = 0;
        for (int d = ndim - 1; d >= 0; --d) {
            int64_t i = linear % sizes[d];
            linear /= sizes[d];
            off += i * strides[d];
        }
        return off;
    }
};

} // namespace mg
