// ops/cat.h: joining, splitting and reversing along a dim.
//
//   y = cat([x_0 .. x_n], dim)      dx_i = the slice of dy that x_i occupies
//   [y_0 .. y_n] = split(x, sizes)  dx = cat(dy_0 .. dy_n) (pieces with no gradient give zeros)
//   y = flip(x, dim)                y[.., i, ..] = x[.., n-1-i, ..] (n = x.size(dim));  dx = flip(dy, dim)
// split returns views that share x's storage, recorded as one node (one cat in backward); cat and flip copy into a new tensor
// (flip reads x through a view with a negated stride that never leaves the op).
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace mg {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
// Pieces of the given sizes along dim; they must add up to x.size(dim).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// Pieces of `size` along dim (the last one may be shorter).
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim);
// x reversed along dim (any dtype; a new contiguous tensor).
Tensor flip(const Tensor& x, int64_t dim);

} // namespace mg
