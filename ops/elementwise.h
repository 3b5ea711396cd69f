// ops/elementwise.h: broadcasting arithmetic and pointwise math.
//
// Binary ops broadcast NumPy-style: a (.., m, 1) and b (n) give (.., m, n). Both inputs must
// share dtype (f32 or f64) and device.
//
// Derivatives (g = dL/dy; sum_to folds broadcast dims back, ops/reduce.h):
//   y = a + b    da = sum_to(g)            db = sum_to(g)
//   y = a - b    da = sum_to(g)            db = -sum_to(g)
//   y = a * b    da = sum_to(g b)          db = sum_to(g a)
//   y = a / b    da = sum_to(g / b)        db = -sum_to(g a / b^2)
//   y = -x       dx = -g
//   y = exp x    dx = g y
//   y = log x    dx = g / x
//   y = sqrt x   dx = g / (2 y)
//   y = rsqrt x  dx = -g y^3 / 2
//   y = x^p      dx = g p x^(p-1)
//   y = softshrink(x, lambda) = sign(x) max(|x| - lambda, 0)   (PyTorch's F.softshrink, the
//                soft threshold)          dx = g [|x| > lambda]   (0 at the kinks, as PyTorch)
#pragma once
#include <cstdint>

#include "common/elementwise.h"
#include "tensor/indexing.h"
#include "tensor/tensor.h"

namespace mg {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor softshrink(const Tensor& x, double lambda); // lambda >= 0

// ---- kernels --------------------------------------------------------------------------------
// out[i] = op(a[ia(i)], b[ib(i)]) for the n elements of the (contiguous) output. Writes (=).
template <typename T>
void binary_forward_cpu(T* out, const T* a, const StridedIndexer& ia, const T* b,
                        const StridedIndexer& ib, int64_t n, BinaryOp op);
// out[i] = f(x[i]); dx[i] = dy[i] f'(x[i]) (y = f(x) passed in for exp/sqrt/rsqrt). Write (=).
template <typename T> void unary_forward_cpu(T* out, const T* x, int64_t n, UnaryOp op, T p);
template <typename T>
void unary_backward_cpu(T* dx, const T* dy, const T* x, const T* y, int64_t n, UnaryOp op, T p);

} // namespace mg
