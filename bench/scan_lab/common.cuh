// bench/scan_lab/common.cuh: what the kept versions v1-v3 of the GPU selective scan share (the
// lab's numbered versions; v4, the winner, is cuda/selective_scan.cu). All three put 32 channels
// in a block, run 16 states per pass, save the state at the end of every tile as checkpoints, and
// finish the backward the same deterministic way: the main kernel leaves per-block partial dB/dC
// and per-batch dA/dD/dbias in a workspace; two small kernels add them up in a fixed order.
#pragma once
#include "cuda/launch.h"
#include "cuda/selective_scan.h"
#include "common/activation.h"
#include "common/selective_scan.h"

namespace mg::scanlab {

using cuda::allow_dynamic_smem;
using cuda::ceil_div;
using cuda::launch_linear;

constexpr int kStates = 16;   // states per pass (one group; N > 16 runs the time loop per group)
constexpr int kChannels = 32; // channels per block
constexpr double kLn2 = 0.6931471805599453;

__device__ __forceinline__ float exp2_dev(float x) { return exp2f(x); }
__device__ __forceinline__ double exp2_dev(double x) { return exp2(x); }

MG_HD int64_t n_groups(int64_t N) { return (N + kStates - 1) / kStates; }

// Workspace: partial dB/dC per (b, channel block, t, 2N); dA per (b, d, N); dD and dbias per (b, d).
struct BwdWork {
    int64_t n_blocks, part, dA, dD, dbias, total;
    MG_HD BwdWork(int64_t B, int64_t L, int64_t D, int64_t N) {
        n_blocks = (D + kChannels - 1) / kChannels;
        part = 0;
        dA = part + B * n_blocks * L * 2 * N;
        dD = dA + B * D * N;
        dbias = dD + B * D;
        total = dbias + B * D;
    }
};

// dB[b,t,n] = Σ_blocks part[b, blk, t, n]; dC likewise (blocks in order).
template <typename T>
__global__ void reduce_dbc_kernel(int64_t total, T* dB, T* dC, const T* work, int64_t n_blocks, int64_t L, int64_t N) {
    MG_GRID_LOOP(j, total) { // j over (b, t, col) with col in [0, 2N)
        int64_t col = j % (2 * N), bt = j / (2 * N), b = bt / L, t = bt % L;
        T s = 0;
        for (int64_t blk = 0; blk < n_blocks; ++blk) s += work[((b * n_blocks + blk) * L + t) * 2 * N + col];
        if (col < N) dB[bt * N + col] = s;
        else dC[bt * N + col - N] = s;
    }
}

// dA[d,n] = Σ_b dA_part[b,d,n]; dD[d], dbias[d] likewise (batch in order).
template <typename T>
__global__ void reduce_params_kernel(int64_t total, T* dA, T* dD, T* dbias, const T* work, BwdWork w, int64_t B,
                                     int64_t D, int64_t N) {
    MG_GRID_LOOP(j, total) { // j over (d, n)
        int64_t d = j / N, n = j % N;
        T s = 0;
        for (int64_t b = 0; b < B; ++b) s += work[w.dA + (b * D + d) * N + n];
        dA[j] = s;
        if (n == 0) {
            T sD = 0, sb = 0;
            for (int64_t b = 0; b < B; ++b) {
                sD += work[w.dD + b * D + d];
                sb += work[w.dbias + b * D + d];
            }
            if (dD) dD[d] = sD;
            if (dbias) dbias[d] = sb;
        }
    }
}

inline int64_t workspace_elems(int64_t B, int64_t L, int64_t D, int64_t N) { return BwdWork(B, L, D, N).total; }

// The two reductions that end every version's backward.
template <typename T> void finish_bwd(const ScanBwdArgs<T>& a, const T* work) {
    const BwdWork w(a.B, a.L, a.D, a.N);
    launch_linear(reduce_dbc_kernel<T>, a.B * a.L * 2 * a.N, a.dB, a.dC, work, w.n_blocks, a.L, a.N);
    launch_linear(reduce_params_kernel<T>, a.D * a.N, a.dA, a.dD, a.ddelta_bias, work, w, a.B, a.D, a.N);
}


} // namespace mg::scanlab
