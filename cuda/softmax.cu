// cuda/softmax.cu: softmax over the last dim, forward and backward.
//
// A team of threads per row (cuda/row_team.cuh: one warp for D <= 1024, else up to 256
// threads). Forward: three strided walks over the row: the max (team_max: exact, and a NaN
// wins), the sum of exp(x - max) (team_sum, a fixed order that depends on D only, so results
// are deterministic), then y = exp(x - max) / sum. A fully -inf row has max = -inf and gets
// zeros (ops/softmax.h). Backward: one team_sum of g y per row, then dx = y (g - that sum).
#include <cmath>

#include "cuda/row_team.cuh"
#include "cuda/softmax.h"

namespace mg::cuda {

// ---- forward --------------------------------------------------------------------------------
template <typename T> __global__ void softmax_forward_kernel(T* out, const T* x, int64_t N, int64_t D) {
    const int64_t n = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool live = n < N; // a team past the last row still takes part in the barriers
    const int64_t base = live ? n * D : 0, len = live ? D : 0;
    const T neg_inf = -T(INFINITY);
    T m = neg_inf;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) m = nan_max(m, x[base + j]);
    m = team_max(m);
    const bool masked = m == neg_inf; // all -inf (and the teams past the last row)
    T s = T(0);
    if (!masked)
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) s += exp(x[base + j] - m);
    s = team_sum(s);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) out[base + j] = masked ? T(0) : exp(x[base + j] - m) / s;
}

template <typename T> void softmax_forward(T* out, const T* x, int64_t N, int64_t D) {
    if (N == 0) return;
    const RowLaunch l(N, D);
    softmax_forward_kernel<T><<<l.grid, l.block>>>(out, x, N, D);
    CUDA_CHECK_LAUNCH();
}

// ---- backward -------------------------------------------------------------------------------
// dx_nj = y_nj (g_nj - sum_k g_nk y_nk)
template <typename T> __global__ void softmax_backward_kernel(T* dx, const T* dout, const T* y, int64_t N, int64_t D) {
    const int64_t n = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool live = n < N; // a team past the last row still takes part in the barriers
    const int64_t base = live ? n * D : 0, len = live ? D : 0;
    T dot = T(0);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) dot += dout[base + j] * y[base + j];
    dot = team_sum(dot);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) dx[base + j] = y[base + j] * (dout[base + j] - dot);
}

template <typename T> void softmax_backward(T* dx, const T* dout, const T* y, int64_t N, int64_t D) {
    if (N == 0) return;
    const RowLaunch l(N, D);
    softmax_backward_kernel<T><<<l.grid, l.block>>>(dx, dout, y, N, D);
    CUDA_CHECK_LAUNCH();
}

#define MG_INST(T)                                                            \
    template void softmax_forward<T>(T*, const T*, int64_t, int64_t);         \
    template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
