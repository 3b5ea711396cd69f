// cuda/activation.cu: SiLU, softplus, sigmoid, GELU and dropout; one thread per element. The
// math is common/activation.h, shared with the CPU kernels.
#include "cuda/activation.h"
#include "cuda/launch.h"

namespace mg::cuda {

template <typename T>
__global__ void activation_forward_kernel(int64_t n, T* out, const T* x, Activation act) {
    MG_GRID_LOOP(i, n) out[i] = activation_apply(act, x[i]);
}
template <typename T> void activation_forward(T* out, const T* x, int64_t n, Activation act) {
    launch_linear(activation_forward_kernel<T>, n, out, x, act);
}

// d act(x) / dx: the table in ops/activation.h, computed by activation_grad.
template <typename T>
__global__ void activation_backward_kernel(int64_t n, T* dx, const T* dy, const T* x, Activation act) {
    MG_GRID_LOOP(i, n) dx[i] = activation_grad(act, dy[i], x[i]);
}
template <typename T> void activation_backward(T* dx, const T* dy, const T* x, int64_t n, Activation act) {
    launch_linear(activation_backward_kernel<T>, n, dx, dy, x, act);
}

template <typename T>
__global__ void dropout_kernel(int64_t n, T* out, const T* x, double p, T scale, uint64_t seed, uint64_t offset) {
    MG_GRID_LOOP(i, n) out[i] = dropout_keep(seed, offset, i, p) ? x[i] * scale : T(0);
}
template <typename T>
void dropout(T* out, const T* x, int64_t n, double p, T scale, uint64_t seed, uint64_t offset) {
    launch_linear(dropout_kernel<T>, n, out, x, p, scale, seed, offset);
}

#define MG_INST(T)                                                                               \
    template void activation_forward<T>(T*, const T*, int64_t, Activation);                      \
    template void activation_backward<T>(T*, const T*, const T*, int64_t, Activation);           \
    template void dropout<T>(T*, const T*, int64_t, double, T, uint64_t, uint64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
