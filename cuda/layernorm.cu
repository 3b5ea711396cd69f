// cuda/layernorm.cu: LayerNorm forward and backward.
//
// Forward and dx: a team of threads per row (cuda/row_team.cuh: one warp for D <= 1024, else up
// to 256 threads), combined by team_sum in a fixed order that depends on D only, so results are
// deterministic. The forward takes the mean and then the variance about it (two sums over the
// row, no cancellation when |mean| >> the spread); dx takes its two row sums, a_n and c_n,
// the same way.
// dweight[j] = sum_n dout_nj xh_nj and dbias[j] = sum_n dout_nj: one partial kernel writes both
// per fixed row group (block (tile, group), a thread per column, rows in order), and
// column_group_sum adds each column's groups in order. No atomics.
#include "cuda/layernorm.h"
#include "cuda/row_team.cuh"

namespace mg::cuda {

// ---- forward --------------------------------------------------------------------------------
template <typename T>
__global__ void layer_norm_forward_kernel(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                                          int64_t N, int64_t D, double eps) {
    const int64_t n = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool live = n < N; // a team past the last row still takes part in the barriers
    const int64_t base = live ? n * D : 0, len = live ? D : 0;
    T s = T(0);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) s += x[base + j];
    const T mu = team_sum(s) / T(D);
    T ss = T(0);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        const T d = x[base + j] - mu;
        ss += d * d;
    }
    const T r = T(1) / sqrt(team_sum(ss) / T(D) + T(eps));
    if (live && threadIdx.x == 0) {
        mean[n] = mu;
        rstd[n] = r;
    }
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        const T v = (x[base + j] - mu) * r * weight[j];
        out[base + j] = bias ? v + bias[j] : v;
    }
}

template <typename T>
void layer_norm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t N, int64_t D,
                        double eps) {
    if (N == 0) return;
    const RowLaunch l(N, D);
    layer_norm_forward_kernel<T><<<l.grid, l.block>>>(out, mean, rstd, x, weight, bias, N, D, eps);
    CUDA_CHECK_LAUNCH();
}

// ---- backward -------------------------------------------------------------------------------
// dx_nj = r_n (gw_nj - a_n - xh_nj c_n),  gw = g w,  a_n = mean_k gw_nk,  c_n = mean_k gw_nk xh_nk
template <typename T>
__global__ void layer_norm_dx_kernel(T* dx, const T* dout, const T* x, const T* weight, const T* mean,
                                     const T* rstd, int64_t N, int64_t D) {
    const int64_t n = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool live = n < N; // a team past the last row still takes part in the barriers
    const int64_t base = live ? n * D : 0, len = live ? D : 0;
    const T mu = live ? mean[n] : T(0), r = live ? rstd[n] : T(0);
    T a = T(0), c = T(0);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        const T gw = dout[base + j] * weight[j];
        a += gw;
        c += gw * (x[base + j] - mu) * r;
    }
    a = team_sum(a) / T(D);
    c = team_sum(c) / T(D);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        const T xh = (x[base + j] - mu) * r;
        dx[base + j] = r * (dout[base + j] * weight[j] - a - xh * c);
    }
}

// partial_w[group, j] = sum over the group's rows n (in order) of dout_nj xh_nj, and
// partial_b[group, j] = the same of dout_nj.
template <typename T>
__global__ void layer_norm_param_partial_kernel(T* partial_w, T* partial_b, const T* dout, const T* x, const T* mean,
                                                const T* rstd, int64_t N, int64_t D, int64_t rows_per_group) {
    const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, group = blockIdx.y;
    if (j >= D) return;
    const int64_t n0 = group * rows_per_group, n1 = n0 + rows_per_group < N ? n0 + rows_per_group : N;
    T acc_w = T(0), acc_b = T(0);
    for (int64_t n = n0; n < n1; ++n) {
        const T g = dout[n * D + j];
        acc_w += g * (x[n * D + j] - mean[n]) * rstd[n];
        acc_b += g;
    }
    partial_w[group * D + j] = acc_w;
    partial_b[group * D + j] = acc_b;
}

size_t layer_norm_backward_workspace(int64_t N, int64_t D, size_t elem_size) {
    return size_t(2 * row_groups(N) * D) * elem_size;
}

template <typename T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const T* mean,
                         const T* rstd, void* workspace, int64_t N, int64_t D) {
    if (D == 0) return;
    if (N > 0) {
        const RowLaunch l(N, D);
        layer_norm_dx_kernel<T><<<l.grid, l.block>>>(dx, dout, x, weight, mean, rstd, N, D);
        CUDA_CHECK_LAUNCH();
    }
    if (!dweight && !dbias) return;
    if (N == 0) {
        if (dweight) CUDA_CHECK(cudaMemsetAsync(dweight, 0, size_t(D) * sizeof(T)));
        if (dbias) CUDA_CHECK(cudaMemsetAsync(dbias, 0, size_t(D) * sizeof(T)));
        return;
    }
    const GroupLaunch l(N, D);
    T* partial_w = static_cast<T*>(workspace);
    T* partial_b = partial_w + l.groups * D;
    layer_norm_param_partial_kernel<T><<<l.grid, l.block>>>(partial_w, partial_b, dout, x, mean, rstd, N, D, l.rows);
    CUDA_CHECK_LAUNCH();
    if (dweight) column_group_sum(dweight, partial_w, D, l.groups);
    if (dbias) column_group_sum(dbias, partial_b, D, l.groups);
}

#define MG_INST(T)                                                                                              \
    template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double);     \
    template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, void*,    \
                                         int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
