// cuda/reduce.cu: row reductions. One block per row; each thread folds a strided slice of the
// row, then the block combines the partials in a fixed tree order (deterministic: no atomics).
#include "cuda/launch.h"
#include "cuda/reduce.h"
#include "common/reduce.h"

namespace mg::cuda {

constexpr int kReduceBlock = 256;

template <typename T>
__global__ void reduce_rows_kernel(T* out, int32_t* argmax, const T* x, int64_t inner, ReduceOp op) {
    __shared__ T sval[kReduceBlock];
    __shared__ int32_t sidx[kReduceBlock];
    const T* row = x + int64_t(blockIdx.x) * inner;
    bool is_max = op == ReduceOp::max;
    T acc = is_max ? row[0] : T(0);
    int32_t idx = 0;
    for (int64_t k = threadIdx.x; k < inner; k += blockDim.x) {
        T v = row[k];
        if (!is_max) acc += v;
        else if (v > acc) { acc = v; idx = int32_t(k); }
    }
    // Threads that saw no element hold row[0] at index 0: a valid candidate for max.
    sval[threadIdx.x] = acc;
    sidx[threadIdx.x] = idx;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            T a = sval[threadIdx.x], b = sval[threadIdx.x + s];
            if (!is_max) sval[threadIdx.x] = a + b;
            else {
                int32_t ia = sidx[threadIdx.x], ib = sidx[threadIdx.x + s];
                if (b > a || (b == a && ib < ia)) { sval[threadIdx.x] = b; sidx[threadIdx.x] = ib; }
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        T r = sval[0];
        if (op == ReduceOp::mean) r /= T(inner);
        out[blockIdx.x] = r;
        if (is_max && argmax) argmax[blockIdx.x] = sidx[0];
    }
}

template <typename T>
void reduce_rows(T* out, int32_t* argmax, const T* x, int64_t outer, int64_t inner, ReduceOp op) {
    if (outer == 0) return;
    if (inner == 0) {
        // Empty rows: sum and mean of nothing are 0 (max of nothing is rejected by the caller).
        CUDA_CHECK(cudaMemset(out, 0, size_t(outer) * sizeof(T)));
        return;
    }
    for (int64_t o = 0; o < outer; o += 2147483647LL) {
        int64_t rows = outer - o < 2147483647LL ? outer - o : 2147483647LL;
        reduce_rows_kernel<T><<<unsigned(rows), kReduceBlock>>>(out + o, argmax ? argmax + o : nullptr,
                                                                x + o * inner, inner, op);
        CUDA_CHECK_LAUNCH();
    }
}

template <typename T>
__global__ void max_rows_backward_kernel(int64_t n, T* dx, const T* dout, const int32_t* argmax, int64_t inner) {
    MG_GRID_LOOP(i, n) {
        int64_t o = i / inner, k = i % inner;
        dx[i] = k == argmax[o] ? dout[o] : T(0);
    }
}
template <typename T>
void max_rows_backward(T* dx, const T* dout, const int32_t* argmax, int64_t outer, int64_t inner) {
    launch_linear(max_rows_backward_kernel<T>, outer * inner, dx, dout, argmax, inner);
}

#define MG_INST(T)                                                                            \
    template void reduce_rows<T>(T*, int32_t*, const T*, int64_t, int64_t, ReduceOp);          \
    template void max_rows_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
