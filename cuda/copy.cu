// cuda/copy.cu: strided copies with dtype conversion (the casts of Tensor::to(DType), bf16
// included), fills and random factories.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/copy.h"
#include "cuda/launch.h"
#include "tensor/random.h"

namespace mg::cuda {

template <typename D, typename S>
__global__ void copy_strided_kernel(int64_t n, D* dst, StridedIndexer di, const S* src, StridedIndexer si) {
    MG_GRID_LOOP(i, n) dst[di.offset(i)] = D(src[si.offset(i)]);
}
template <typename D, typename S>
__global__ void copy_strided32_kernel(int64_t n, D* dst, StridedIndexer di, const S* src, StridedIndexer si) {
    MG_GRID_LOOP(i, n) dst[di.offset32(uint32_t(i))] = D(src[si.offset32(uint32_t(i))]);
}
// Rows of at least kRowMin elements (both indexers walk the same coalesced shape, so their rows
// match): each warp copies kSeg consecutive elements of one row, kPerLane per lane at a stride of
// 32 (coalesced when the inner strides are 1), all loads in flight before the stores. The warp
// computes the row's two offsets once for its kSeg elements: every lane runs the same division
// chain, and a warp pays for an instruction once, not per lane. This is the layout of split
// pieces and narrowed views (rows of d_inner floats at a stride of 2·d_inner), where the element
// kernel ran the chain per 32 elements and was issue-bound at a quarter of the copy bandwidth,
// and a block per row (one offset computation shared through shared memory) was latency-bound
// on its barriers (bench/RESULTS.md).
// kVec: both inner strides 1, D == S, and every lane's 4 elements aligned to 4 elements (checked
// by the launcher): each lane moves its 4 consecutive elements as one 16-byte access (two for
// doubles) instead of 4 separate ones.
constexpr int64_t kRowMin = 64;
constexpr int kPerLane = 4;
constexpr int64_t kSeg = 32 * kPerLane;
template <typename T> struct alignas(kPerLane * sizeof(T)) Pack { T v[kPerLane]; };
template <bool kVec, typename D, typename S>
__global__ void copy_rows_kernel(int64_t rows, int64_t len, D* dst, StridedIndexer di, const S* src, StridedIndexer si) {
    const int lane = threadIdx.x % 32;
    const int64_t dstep = di.inner_stride(), sstep = si.inner_stride();
    const int64_t segs = (len + kSeg - 1) / kSeg, total = rows * segs;
    const bool small = rows * len < (int64_t(1) << 31);
    const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
    for (int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; w < total; w += warps) {
        const int64_t r = small ? int64_t(uint32_t(w) / uint32_t(segs)) : w / segs;
        const int64_t first = r * len, seg0 = (w - r * segs) * kSeg;
        D* d = dst + (small ? di.offset32(uint32_t(first)) : di.offset(first));
        const S* s = src + (small ? si.offset32(uint32_t(first)) : si.offset(first));
        if constexpr (kVec) {
            const int64_t c = seg0 + kPerLane * lane; // len is a multiple of kPerLane
            if (c < len) *reinterpret_cast<Pack<D>*>(d + c) = *reinterpret_cast<const Pack<S>*>(s + c);
        } else {
            S v[kPerLane];
#pragma unroll
            for (int k = 0; k < kPerLane; ++k) {
                const int64_t c = seg0 + lane + 32 * k;
                v[k] = c < len ? s[c * sstep] : S(0);
            }
#pragma unroll
            for (int k = 0; k < kPerLane; ++k) {
                const int64_t c = seg0 + lane + 32 * k;
                if (c < len) d[c * dstep] = D(v[k]);
            }
        }
    }
}

// Whether p's rows (indexer ix, inner stride 1) start on Pack boundaries: p aligned and every
// outer stride a multiple of kPerLane elements.
template <typename T> bool pack_aligned(const T* p, const StridedIndexer& ix) {
    if (ix.inner_stride() != 1 || reinterpret_cast<uintptr_t>(p) % sizeof(Pack<T>) != 0) return false;
    for (int d = 0; d + 1 < ix.ndim; ++d)
        if (ix.strides[d] % kPerLane != 0) return false;
    return true;
}

template <typename D, typename S>
void copy_strided(D* dst, const StridedIndexer& di, const S* src, const StridedIndexer& si, int64_t n) {
    const int64_t len = di.row_length();
    if (di.ndim >= 2 && len >= kRowMin && len == si.row_length() && n % len == 0) {
        const int64_t rows = n / len;
        const unsigned blocks = blocks_for(rows * ceil_div(len, kSeg) * 32);
        bool vec = false;
        if constexpr (std::is_same_v<D, S>) {
            vec = len % kPerLane == 0 && pack_aligned(dst, di) && pack_aligned(src, si);
            if (vec) copy_rows_kernel<true, D, S><<<blocks, kBlock>>>(rows, len, dst, di, src, si);
        }
        if (!vec) copy_rows_kernel<false, D, S><<<blocks, kBlock>>>(rows, len, dst, di, src, si);
        CUDA_CHECK_LAUNCH();
    } else if (n < (int64_t(1) << 31)) {
        launch_linear(copy_strided32_kernel<D, S>, n, dst, di, src, si);
    } else {
        launch_linear(copy_strided_kernel<D, S>, n, dst, di, src, si);
    }
}

template <typename T> __global__ void fill_kernel(int64_t n, T* out, T value) {
    MG_GRID_LOOP(i, n) out[i] = value;
}
// All-zero bits (0, +0.0) go to cudaMemsetAsync, which runs at the copy bandwidth; the kernel
// writes any other value (a scalar store per thread).
template <typename T> void fill(T* out, int64_t n, T value) {
    const T zero{};
    if (n > 0 && std::memcmp(&value, &zero, sizeof(T)) == 0) {
        CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(n) * sizeof(T)));
        return;
    }
    launch_linear(fill_kernel<T>, n, out, value);
}

template <typename T> __global__ void arange_kernel(int64_t n, T* out) {
    MG_GRID_LOOP(i, n) out[i] = T(i);
}
template <typename T> void arange(T* out, int64_t n) { launch_linear(arange_kernel<T>, n, out); }

template <typename T>
__global__ void uniform_kernel(int64_t n, T* out, uint64_t seed, uint64_t offset, double lo, double hi) {
    MG_GRID_LOOP(i, n) out[i] = T(lo + (hi - lo) * rng::uniform01(seed, offset + uint64_t(i)));
}
template <typename T> void uniform(T* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
    launch_linear(uniform_kernel<T>, n, out, seed, offset, lo, hi);
}

template <typename T> __global__ void normal_kernel(int64_t n, T* out, uint64_t seed, uint64_t offset) {
    MG_GRID_LOOP(i, n) out[i] = T(rng::normal(seed, offset + uint64_t(i)));
}
template <typename T> void normal(T* out, int64_t n, uint64_t seed, uint64_t offset) {
    launch_linear(normal_kernel<T>, n, out, seed, offset);
}

#define MG_COPY_PAIR(D, S) \
    template void copy_strided<D, S>(D*, const StridedIndexer&, const S*, const StridedIndexer&, int64_t);
// Every pair of storage types. A bf16 end converts with common/bf16.h, the same code as the CPU
// copy, so a cast gives the same bits on both devices.
#define MG_COPY_FROM(D) MG_COPY_PAIR(D, float) MG_COPY_PAIR(D, double) MG_COPY_PAIR(D, int32_t) MG_COPY_PAIR(D, bf16)
MG_COPY_FROM(float)
MG_COPY_FROM(double)
MG_COPY_FROM(int32_t)
MG_COPY_FROM(bf16)
#define MG_FACTORY(T)                                                                   \
    template void fill<T>(T*, int64_t, T);                                              \
    template void arange<T>(T*, int64_t);                                               \
    template void uniform<T>(T*, int64_t, uint64_t, uint64_t, double, double);          \
    template void normal<T>(T*, int64_t, uint64_t, uint64_t);
MG_FACTORY(float)
MG_FACTORY(double)
MG_FACTORY(int32_t)
MG_FACTORY(bf16)

} // namespace mg::cuda
