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

    // Elements per innermost row, and the innermost stride (1 and 0 for a 0-dim tensor).
    MG_HD int64_t row_length() const { return ndim ? sizes[ndim - 1] : 1; }
    MG_HD int64_t inner_stride() const { return ndim ? strides[ndim - 1] : 0; }

    // offset() with 32-bit index arithmetic, for walks of fewer than 2^31 elements (a 64-bit
    // division is several times the instructions of a 32-bit one on a GPU).
    MG_HD int64_t offset32(uint32_t linear) const {
        int64_t off = 0;
        for (int d = ndim - 1; d >= 0; --d) {
            const uint32_t s = uint32_t(sizes[d]), q = linear / s;
            off += int64_t(linear - q * s) * strides[d];
            linear = q;
        }
        return off;
    }

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

#if !defined(__CUDACC__)
// The CPU walk over n elements in rows: f(first_linear_index, len) is called for each
// innermost row (in parallel with OpenMP when n is large), and the caller derives each operand's
// row offset with offset(first) once per row and steps by its inner_stride() inside. That costs
// one division chain per row rather than one per element, and a contiguous inner row becomes
// a plain loop the compiler vectorises.
template <typename F> void for_each_row(int64_t n, int64_t row_length, int64_t grain, F&& f) {
    if (n == 0) return;
    const int64_t len = row_length > 0 ? row_length : 1, rows = n / len;
#pragma omp parallel for if (n > grain)
    for (int64_t r = 0; r < rows; ++r) f(r * len, len);
}
#endif

} // namespace mg
