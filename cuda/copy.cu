// cuda/copy.cu: strided copies with dtype conversion, fills and random factories.
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
template <typename D, typename S>
void copy_strided(D* dst, const StridedIndexer& di, const S* src, const StridedIndexer& si, int64_t n) {
    if (n < (int64_t(1) << 31)) launch_linear(copy_strided32_kernel<D, S>, n, dst, di, src, si);
    else launch_linear(copy_strided_kernel<D, S>, n, dst, di, src, si);
}

template <typename T> __global__ void fill_kernel(int64_t n, T* out, T value) {
    MG_GRID_LOOP(i, n) out[i] = value;
}
template <typename T> void fill(T* out, int64_t n, T value) { launch_linear(fill_kernel<T>, n, out, value); }

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
#define MG_COPY_FROM(D) MG_COPY_PAIR(D, float) MG_COPY_PAIR(D, double) MG_COPY_PAIR(D, int32_t)
MG_COPY_FROM(float)
MG_COPY_FROM(double)
MG_COPY_FROM(int32_t)
#define MG_FACTORY(T)                                                                   \
    template void fill<T>(T*, int64_t, T);                                              \
    template void arange<T>(T*, int64_t);                                               \
    template void uniform<T>(T*, int64_t, uint64_t, uint64_t, double, double);          \
    template void normal<T>(T*, int64_t, uint64_t, uint64_t);
MG_FACTORY(float)
MG_FACTORY(double)
MG_FACTORY(int32_t)

} // namespace mg::cuda
