// cuda/elementwise.cu: broadcasting binary ops and pointwise math; one thread per element.
#include "cuda/elementwise.h"
#include "cuda/launch.h"

namespace mg::cuda {

template <typename T>
__global__ void binary_strided_kernel(int64_t n, T* out, const T* a, StridedIndexer ia, const T* b,
                                      StridedIndexer ib, BinaryOp op) {
    MG_GRID_LOOP(i, n) out[i] = binary_apply(op, a[ia.offset(i)], b[ib.offset(i)]);
}
template <typename T>
__global__ void binary_contiguous_kernel(int64_t n, T* out, const T* a, const T* b, BinaryOp op) {
    MG_GRID_LOOP(i, n) out[i] = binary_apply(op, a[i], b[i]);
}
template <typename T>
void binary_forward(T* out, const T* a, const StridedIndexer& ia, const T* b, const StridedIndexer& ib,
                    int64_t n, BinaryOp op, bool contiguous) {
    if (contiguous) launch_linear(binary_contiguous_kernel<T>, n, out, a, b, op);
    else launch_linear(binary_strided_kernel<T>, n, out, a, ia, b, ib, op);
}

template <typename T> __global__ void unary_forward_kernel(int64_t n, T* out, const T* x, UnaryOp op, T p) {
    MG_GRID_LOOP(i, n) out[i] = unary_apply(op, x[i], p);
}
template <typename T> void unary_forward(T* out, const T* x, int64_t n, UnaryOp op, T p) {
    launch_linear(unary_forward_kernel<T>, n, out, x, op, p);
}

template <typename T>
__global__ void unary_backward_kernel(int64_t n, T* dx, const T* dy, const T* x, const T* y, UnaryOp op, T p) {
    MG_GRID_LOOP(i, n) dx[i] = unary_grad(op, dy[i], x[i], y[i], p);
}
template <typename T>
void unary_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, UnaryOp op, T p) {
    launch_linear(unary_backward_kernel<T>, n, dx, dy, x, y, op, p);
}

#define MG_INST(T)                                                                               \
    template void binary_forward<T>(T*, const T*, const StridedIndexer&, const T*,               \
                                    const StridedIndexer&, int64_t, BinaryOp, bool);             \
    template void unary_forward<T>(T*, const T*, int64_t, UnaryOp, T);                           \
    template void unary_backward<T>(T*, const T*, const T*, const T*, int64_t, UnaryOp, T);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
