// tensor/shape.h: shapes, strides and the small arithmetic on them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mg {

using Shape = std::vector<int64_t>;

int64_t numel_of(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
// "(2,16,64)"; "()" for a 0-dim tensor.
std::string shape_str(const Shape& shape);
// The row-major index (one entry per dim) of element `flat` of a tensor of `shape`.
std::vector<int64_t> unravel_index(int64_t flat, const Shape& shape);
// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcasting of two shapes; throws naming `op` and both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Strides that read a tensor of `shape`/`strides` as if it had `target` shape (stride 0 on
// broadcast dims). `shape` must broadcast to `target`.
Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& target);

} // namespace mg
