// cuda/row_team.cuh: the launch layout and fixed-order sums shared by the row-wise kernels
// (cuda/rmsnorm.cu, cuda/layernorm.cu, cuda/softmax.cu): device code and launch arithmetic only.
//
// Row teams. N contiguous rows of D, a team of row_threads(D) threads per row (threadIdx.x: one
// warp for D <= 1024, else a power of two up to 256), kRowBlock / team rows per block
// (threadIdx.y). Each thread folds a strided slice of its row (j = threadIdx.x, + team, ...);
// team_sum / team_max combine the team: a butterfly of shuffles within each warp, then the
// warps' values in warp order. The order depends on D only, so results are deterministic. A
// team of several warps meets barriers, so every thread of the block must call them, the teams
// past the last row of the last block too (give them an empty slice). A warp per row needs no
// barrier at all; a block per row spent most of its time in a tree's seven barriers at D = 128
// (bench/RESULTS.md).
//
// Column sums over fixed row groups. out_j = sum_n term(n, j) with no atomics: the N rows are
// cut into row_groups(N) groups of GroupLaunch::rows; the op's own partial kernel, launched as
// GroupLaunch says, has block (tile, group) write partial[group, j] for the columns j of its
// tile (a thread per column, the group's rows in order); column_group_sum then sums each
// column's partials in group order. The groups depend on N only: deterministic.
#pragma once
#include <cstdint>

#include "cuda/launch.h"
#include "cuda/warp.h"

namespace mg::cuda {

// ---- row teams --------------------------------------------------------------------------------
constexpr int kRowBlock = 256; // threads per block of the row kernels

// Threads per row: one warp up to D = 1024 (32 values per lane), then a power of two up to 256.
inline int row_threads(int64_t D) {
    int t = 32;
    while (t < kRowBlock && t * 32 < D) t *= 2;
    return t;
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

namespace team_detail {

struct Add {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
    template <typename T> __device__ T operator()(T a, T b) const { return nan_max(a, b); }
};

// v, already combined over each warp (every lane of a warp holds the same value), combined over
// the row's team of blockDim.x threads (a row per threadIdx.y) in warp order. Every thread of the
// block calls it; every thread of the team gets the result.
template <typename T, typename Op> __device__ T team_combine(T v, Op op) {
    if (blockDim.x == 32) return v; // the same for the whole block: no thread waits at a barrier alone
    __shared__ T warp_vals[kRowBlock / 32];
    const int row_warp0 = threadIdx.y * blockDim.x / 32, warps = blockDim.x / 32;
    if (threadIdx.x % 32 == 0) warp_vals[row_warp0 + threadIdx.x / 32] = v;
    __syncthreads();
    T s = warp_vals[row_warp0];
    for (int w = 1; w < warps; ++w) s = op(s, warp_vals[row_warp0 + w]);
    __syncthreads(); // warp_vals may be reused by the next call
    return s;
}

} // namespace team_detail

// Sum of v over the row's team, in a fixed order (a butterfly in each warp: a + b == b + a, so
// every lane holds the same bits; then the warps' sums in warp order).
template <typename T> __device__ T team_sum(T v) { return team_detail::team_combine(warp_sum(v), team_detail::Add{}); }

// Max of v over the row's team; a NaN anywhere in the team gives NaN (nan_max, cuda/warp.h).
template <typename T> __device__ T team_max(T v) { return team_detail::team_combine(warp_max(v), team_detail::Max{}); }

// ---- column sums over fixed row groups ----------------------------------------------------------
constexpr int kColTile = 256;         // columns per partial block (at most)
constexpr int64_t kMaxGroups = 1024;  // row groups
constexpr int64_t kMinGroupRows = 16; // rows per group (at least, while groups < kMaxGroups)

inline int64_t row_groups(int64_t N) {
    int64_t g = ceil_div(N, kMinGroupRows);
    return g < 1 ? 1 : (g > kMaxGroups ? kMaxGroups : g);
}

// Grid of a partial kernel for N > 0 rows of D > 0: block (tile, group), a thread per column of
// a tile (up to kColTile columns, a whole number of warps), group g holding the rows
// [g rows, min(N, (g + 1) rows)). Threads past column D must leave.
struct GroupLaunch {
    int64_t groups, rows; // row groups; rows per group (the last group may have fewer)
    dim3 grid, block;
    GroupLaunch(int64_t N, int64_t D) : groups(row_groups(N)), rows(ceil_div(N, row_groups(N))) {
        const int cols = int(D < kColTile ? ceil_div(D, 32) * 32 : kColTile);
        block = dim3(unsigned(cols));
        grid = dim3(unsigned(ceil_div(D, cols)), unsigned(groups));
    }
};

// out[j] = sum over groups of partial[group, j]: one warp per column; lane l sums groups l, l + 32,
// ... in order, then a butterfly over the lanes (a + b == b + a, so every lane ends with the same
// bits, and the same inputs always give the same result).
template <typename T>
__global__ void column_group_sum_kernel(T* out, const T* partial, int64_t D, int64_t groups) {
    const int64_t j = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = int(threadIdx.x % 32);
    if (j >= D) return; // the whole warp leaves together
    T acc = T(0);
    for (int64_t g = lane; g < groups; g += 32) acc += partial[g * D + j];
    acc = warp_sum(acc);
    if (lane == 0) out[j] = acc;
}

// out (D) = the column sums of partial (groups, D), on the default stream, checked. Writes (=).
template <typename T> void column_group_sum(T* out, const T* partial, int64_t D, int64_t groups) {
    if (D == 0) return;
    constexpr int kThreads = 256; // 8 columns (warps) per block
    column_group_sum_kernel<T><<<unsigned(ceil_div(D * 32, kThreads)), kThreads>>>(out, partial, D, groups);
    CUDA_CHECK_LAUNCH();
}

} // namespace mg::cuda
