// ops/reduce.h: sum, mean and max over dims, and argmax along one.
//
// Shapes: x (d0, ..., dn); `dims` lists the reduced dims (negative counts from the end; empty
// means all). The result keeps reduced dims as size 1 when keepdim, else drops them.
#pragma once
#include <vector>

#include "common/reduce.h"
#include "tensor/tensor.h"

namespace mg {

Tensor sum(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
// Max over dims; the gradient flows to the first maximal element of each reduced group
// (ties broken by the lowest index, so the backward is deterministic).
Tensor max(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
// The index (i32) of the first maximum along `dim`, the same element max() picks; no gradient.
// Lets a caller score predictions on the device and copy back one index per row, not the row.
Tensor argmax(const Tensor& x, int64_t dim = -1, bool keepdim = false);

// Sums g down to `shape` (the inverse of broadcasting g's source to g.shape()): used by every
// backward whose forward broadcast an input.
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- kernels (rows contiguous: x is (outer, inner), one result per row) ----------------------
// out[o] = sum_k x[o, k] (mean: / inner; max: with argmax[o] = its first index). Writes (=).
template <typename T>
void reduce_rows_cpu(T* out, int32_t* argmax, const T* x, int64_t outer, int64_t inner, ReduceOp op);
template <typename T>
void reduce_rows_ref(double* out, const T* x, int64_t outer, int64_t inner, ReduceOp op);
// dx[o, k] = (k == argmax[o]) ? dout[o] : 0. Writes (=) every element of dx.
template <typename T>
void max_rows_backward_cpu(T* dx, const T* dout, const int32_t* argmax, int64_t outer, int64_t inner);

} // namespace mg
