// cuda/rmsnorm.cu: RMSNorm forward and backward.
//
// Forward and dx: a team of threads per row (cuda/row_team.cuh: one warp for D <= 1024, else up
// to 256 threads), combined by team_sum in a fixed order that depends on D only, so results are
// deterministic. A warp per row needs no barrier at all; a block per row (the first version)
// spent most of its time in the tree's seven barriers at D = 128 (bench/RESULTS.md).
// dweight[j] = sum_n dout_nj h_nj r_n: the N rows are cut into fixed groups; block (tile,
// group) writes one partial per column of its tile for its group (a thread per column, rows
// in order), and column_group_sum adds the partials of each column in order. No atomics.
#include "cuda/rmsnorm.h"
#include "cuda/row_team.cuh"

namespace mg::cuda {

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

size_t rmsnorm_backward_workspace(int64_t N, int64_t D, size_t elem_size) {
    return size_t(row_groups(N) * D) * elem_size;
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
    const GroupLaunch l(N, D);
    T* partial = static_cast<T*>(workspace);
    rmsnorm_dweight_partial_kernel<T><<<l.grid, l.block>>>(partial, dout, h, rstd, N, D, l.rows);
    CUDA_CHECK_LAUNCH();
    column_group_sum(dweight, partial, D, l.groups);
}

#define MG_INST(T)                                                                                          \
    template void rmsnorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double);    \
    template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, void*, int64_t, \
                                      int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
