// cuda/rmsnorm.cu: RMSNorm forward and backward.
//
// Forward and dx: one block per row. Each thread folds a strided slice of the row, then the
// block combines the partials in a fixed tree order (deterministic). The block size depends on
// D only, so a given shape always reduces in the same order.
// dweight[j] = sum_n dout_nj h_nj r_n: the N rows are cut into G fixed groups; block (tile,
// group) writes one partial per column of its tile for its group (a thread per column, rows
// in order), and a second kernel sums the G partials of each column in order. No atomics.
#include "cuda/launch.h"
#include "cuda/rmsnorm.h"

namespace mg::cuda {

namespace {

constexpr int kMaxRowThreads = 256;
constexpr int kColTile = 256;   // columns per dweight-partial block
constexpr int64_t kMaxGroups = 256; // row groups for dweight
constexpr int64_t kMinGroupRows = 32;

// Threads per row: a power of two from 32 to 256, about D.
int row_threads(int64_t D) {
    int t = 32;
    while (t < kMaxRowThreads && t < D) t *= 2;
    return t;
}

int64_t groups_for(int64_t N) {
    int64_t g = ceil_div(N, kMinGroupRows);
    return g < 1 ? 1 : (g > kMaxGroups ? kMaxGroups : g);
}

// Sum of v over the block, in a fixed tree order; every thread gets the result.
template <typename T> __device__ T block_sum(T v, T* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    T r = shared[0];
    __syncthreads(); // shared may be reused by the caller
    return r;
}

} // namespace

// ---- forward --------------------------------------------------------------------------------
template <typename T>
__global__ void rmsnorm_forward_kernel(T* out, T* h_out, T* rstd, const T* x, const T* residual, const T* weight,
                                       int64_t D, double eps) {
    __shared__ T shared[kMaxRowThreads];
    int64_t base = int64_t(blockIdx.x) * D;
    T ss = T(0);
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        T h = residual ? x[base + j] + residual[base + j] : x[base + j];
        if (h_out) h_out[base + j] = h;
        ss += h * h;
    }
    ss = block_sum(ss, shared);
    T r = T(1) / sqrt(ss / T(D) + T(eps));
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        T h = residual ? x[base + j] + residual[base + j] : x[base + j];
        out[base + j] = h * r * weight[j];
    }
}

template <typename T>
void rmsnorm_forward(T* out, T* h_out, T* rstd, const T* x, const T* residual, const T* weight, int64_t N, int64_t D,
                     double eps) {
    if (N == 0) return;
    rmsnorm_forward_kernel<T><<<unsigned(N), row_threads(D)>>>(out, h_out, rstd, x, residual, weight, D, eps);
    CUDA_CHECK_LAUNCH();
}

// ---- backward -------------------------------------------------------------------------------
// dx_nj = r_n w_j g_nj - h_nj r_n^3 S_n / D (+ dh_nj),  S_n = sum_k g_nk w_k h_nk
template <typename T>
__global__ void rmsnorm_dx_kernel(T* dx, const T* dout, const T* dh, const T* h, const T* weight, const T* rstd,
                                  int64_t D) {
    __shared__ T shared[kMaxRowThreads];
    int64_t base = int64_t(blockIdx.x) * D;
    T S = T(0);
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) S += dout[base + j] * weight[j] * h[base + j];
    S = block_sum(S, shared);
    T r = rstd[blockIdx.x];
    T c = r * r * r * S / T(D);
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        T v = r * weight[j] * dout[base + j] - h[base + j] * c;
        dx[base + j] = dh ? v + dh[base + j] : v;
    }
}

// partial[group, j] = sum over the group's rows n (in order) of dout_nj h_nj r_n.
template <typename T>
__global__ void rmsnorm_dweight_partial_kernel(T* partial, const T* dout, const T* h, const T* rstd, int64_t N,
                                               int64_t D, int64_t rows_per_group) {
    int64_t j = int64_t(blockIdx.x) * kColTile + threadIdx.x, group = blockIdx.y;
    if (j >= D) return;
    int64_t n0 = group * rows_per_group, n1 = n0 + rows_per_group < N ? n0 + rows_per_group : N;
    T acc = T(0);
    for (int64_t n = n0; n < n1; ++n) acc += dout[n * D + j] * h[n * D + j] * rstd[n];
    partial[group * D + j] = acc;
}

// dweight[j] = sum over groups of partial[group, j]: one warp per column; lane l sums groups
// l, l + 32, ... in order, then a butterfly over the lanes (a + b == b + a, so every lane ends
// with the same bits, and the same inputs always give the same result).
template <typename T>
__global__ void rmsnorm_dweight_final_kernel(T* dweight, const T* partial, int64_t D, int64_t groups) {
    const int64_t j = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = int(threadIdx.x % 32);
    if (j >= D) return; // the whole warp leaves together
    T acc = T(0);
    for (int64_t g = lane; g < groups; g += 32) acc += partial[g * D + j];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) dweight[j] = acc;
}

size_t rmsnorm_backward_workspace(int64_t N, int64_t D, size_t elem_size) {
    return size_t(groups_for(N) * D) * elem_size;
}

template <typename T>
void rmsnorm_backward(T* dx, T* dweight, const T* dout, const T* dh, const T* h, const T* weight, const T* rstd,
                      void* workspace, int64_t N, int64_t D) {
    if (D == 0) return;
    if (N > 0) {
        rmsnorm_dx_kernel<T><<<unsigned(N), row_threads(D)>>>(dx, dout, dh, h, weight, rstd, D);
        CUDA_CHECK_LAUNCH();
    }
    if (!dweight) return;
    if (N == 0) {
        CUDA_CHECK(cudaMemsetAsync(dweight, 0, size_t(D) * sizeof(T)));
        return;
    }
    int64_t groups = groups_for(N), rows = ceil_div(N, groups);
    T* partial = static_cast<T*>(workspace);
    dim3 grid(unsigned(ceil_div(D, kColTile)), unsigned(groups));
    rmsnorm_dweight_partial_kernel<T><<<grid, kColTile>>>(partial, dout, h, rstd, N, D, rows);
    CUDA_CHECK_LAUNCH();
    constexpr int kFinalThreads = 256; // 8 columns (warps) per block
    rmsnorm_dweight_final_kernel<T><<<unsigned(ceil_div(D * 32, kFinalThreads)), kFinalThreads>>>(dweight, partial, D, groups);
    CUDA_CHECK_LAUNCH();
}

#define MG_INST(T)                                                                                          \
    template void rmsnorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double);    \
    template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, void*, int64_t, \
                                      int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
