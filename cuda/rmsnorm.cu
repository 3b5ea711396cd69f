// cuda/rmsnorm.cu: RMSNorm forward and backward.
//
// Forward and dx: a team of kRowThreads(D) threads per row (one warp for D <= 1024, else up to
// 256 threads), 256 / team rows per block. Each thread folds a strided slice of its row, the
// warp combines by a butterfly of shuffles and a team of several warps adds its warps' sums in
// warp order: a fixed order that depends on D only, so results are deterministic. A warp per
// row needs no barrier at all; a block per row (the first version) spent most of its time in
// the tree's seven barriers at D = 128 (bench/RESULTS.md).
// dweight[j] = sum_n dout_nj h_nj r_n: the N rows are cut into G fixed groups; block (tile,
// group) writes one partial per column of its tile for its group (a thread per column, rows
// in order), and a second kernel sums the G partials of each column in order. No atomics.
#include "cuda/launch.h"
#include "cuda/rmsnorm.h"
#include "cuda/warp.h"

namespace mg::cuda {

namespace {

constexpr int kRowBlock = 256;      // threads per block for the row kernels
constexpr int kColTile = 256;       // columns per dweight-partial block (at most)
constexpr int64_t kMaxGroups = 1024; // row groups for dweight
constexpr int64_t kMinGroupRows = 16;

// Threads per row: one warp up to D = 1024 (32 values per lane), then a power of two up to 256.
int row_threads(int64_t D) {
    int t = 32;
    while (t < kRowBlock && t * 32 < D) t *= 2;
    return t;
}

int64_t groups_for(int64_t N) {
    int64_t g = ceil_div(N, kMinGroupRows);
    return g < 1 ? 1 : (g > kMaxGroups ? kMaxGroups : g);
}

// Sum of v over the row's team of blockDim.x threads (a row per threadIdx.y), in a fixed order:
// a butterfly within each warp (a + b == b + a, so every lane holds the same bits), then the
// warps' sums in warp order. Every thread of the team gets the result.
template <typename T> __device__ T team_sum(T v) {
    v = warp_sum(v);
    if (blockDim.x == 32) return v;
    __shared__ T warp_sums[kRowBlock / 32];
    const int row_warp0 = threadIdx.y * blockDim.x / 32, warps = blockDim.x / 32;
    if (threadIdx.x % 32 == 0) warp_sums[row_warp0 + threadIdx.x / 32] = v;
    __syncthreads();
    T s = warp_sums[row_warp0];
    for (int w = 1; w < warps; ++w) s += warp_sums[row_warp0 + w];
    __syncthreads(); // warp_sums may be reused by the next call
    return s;
}

// Grid for N rows of D: a team of row_threads(D) threads (x) per row, kRowBlock / team rows (y).
struct RowLaunch {
    dim3 grid, block;
    RowLaunch(int64_t N, int64_t D) {
        const int team = row_threads(D), rows = kRowBlock / team;
        block = dim3(unsigned(team), unsigned(rows));
        grid = dim3(unsigned(ceil_div(N, rows)));
    }
};

} // namespace

// ---- forward --------------------------------------------------------------------------------
template <typename T>
__global__ void rmsnorm_forward_kernel(T* out, T* h_out, T* rstd, const T* x, const T* residual, const T* weight,
                                       int64_t N, int64_t D, double eps) {
    const int64_t n = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool live = n < N; // a team past the last row still takes part in the barriers
    const int64_t base = live ? n * D : 0, len = live ? D : 0;
    T ss = T(0);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        T h = residual ? x[base + j] + residual[base + j] : x[base + j];
        if (h_out) h_out[base + j] = h;
        ss += h * h;
    }
    ss = team_sum(ss);
    T r = T(1) / sqrt(ss / T(D) + T(eps));
    if (live && threadIdx.x == 0) rstd[n] = r;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        T h = residual ? x[base + j] + residual[base + j] : x[base + j];
        out[base + j] = h * r * weight[j];
    }
}

template <typename T>
void rmsnorm_forward(T* out, T* h_out, T* rstd, const T* x, const T* residual, const T* weight, int64_t N, int64_t D,
                     double eps) {
    if (N == 0) return;
    const RowLaunch l(N, D);
    rmsnorm_forward_kernel<T><<<l.grid, l.block>>>(out, h_out, rstd, x, residual, weight, N, D, eps);
    CUDA_CHECK_LAUNCH();
}

// ---- backward -------------------------------------------------------------------------------
// dx_nj = r_n w_j g_nj - h_nj r_n^3 S_n / D (+ dh_nj),  S_n = sum_k g_nk w_k h_nk
template <typename T>
__global__ void rmsnorm_dx_kernel(T* dx, const T* dout, const T* dh, const T* h, const T* weight, const T* rstd,
                                  int64_t N, int64_t D) {
    const int64_t n = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool live = n < N; // a team past the last row still takes part in the barriers
    const int64_t base = live ? n * D : 0, len = live ? D : 0;
    T S = T(0);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) S += dout[base + j] * weight[j] * h[base + j];
    S = team_sum(S);
    const T r = live ? rstd[n] : T(0);
    const T c = r * r * r * S / T(D);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        T v = r * weight[j] * dout[base + j] - h[base + j] * c;
        dx[base + j] = dh ? v + dh[base + j] : v;
    }
}

// partial[group, j] = sum over the group's rows n (in order) of dout_nj h_nj r_n.
template <typename T>
__global__ void rmsnorm_dweight_partial_kernel(T* partial, const T* dout, const T* h, const T* rstd, int64_t N,
                                               int64_t D, int64_t rows_per_group) {
    int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, group = blockIdx.y;
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
    acc = warp_sum(acc);
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
        const RowLaunch l(N, D);
        rmsnorm_dx_kernel<T><<<l.grid, l.block>>>(dx, dout, dh, h, weight, rstd, N, D);
        CUDA_CHECK_LAUNCH();
    }
    if (!dweight) return;
    if (N == 0) {
        CUDA_CHECK(cudaMemsetAsync(dweight, 0, size_t(D) * sizeof(T)));
        return;
    }
    int64_t groups = groups_for(N), rows = ceil_div(N, groups);
    T* partial = static_cast<T*>(workspace);
    const int cols = int(D < kColTile ? ceil_div(D, 32) * 32 : kColTile);
    dim3 grid(unsigned(ceil_div(D, cols)), unsigned(groups));
    rmsnorm_dweight_partial_kernel<T><<<grid, cols>>>(partial, dout, h, rstd, N, D, rows);
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
