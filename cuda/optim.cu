// cuda/optim.cu: fused AdamW step and clip-by-value; one thread per element, no reductions.
#include "cuda/launch.h"
#include "cuda/optim.h"

namespace mg::cuda {

template <typename T>
__global__ void adamw_step_kernel(int64_t n, T* p, T* m, T* v, const T* g, train::AdamWCoef c) {
    MG_GRID_LOOP(i, n) {
        T pi = p[i], mi = m[i], vi = v[i];
        train::adamw_update(pi, mi, vi, g[i], c);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}
template <typename T> void adamw_step(T* p, T* m, T* v, const T* g, int64_t n, const train::AdamWCoef& c) {
    launch_linear(adamw_step_kernel<T>, n, p, m, v, g, c);
}

template <typename T> __global__ void clip_value_kernel(int64_t n, T* x, T c) {
    MG_GRID_LOOP(i, n) x[i] = train::clip_value_apply(x[i], c);
}
template <typename T> void clip_value(T* x, int64_t n, T c) { launch_linear(clip_value_kernel<T>, n, x, c); }

#define MG_INST(T)                                                                               \
    template void adamw_step<T>(T*, T*, T*, const T*, int64_t, const train::AdamWCoef&);         \
    template void clip_value<T>(T*, int64_t, T);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
