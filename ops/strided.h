// ops/strided.h: walking tensors of any strides: the indexer a strided kernel takes, and the
// dimension merging that makes it cheap (ops/copy.cpp).
#pragma once
#include <initializer_list>

#include "tensor/indexing.h"
#include "tensor/tensor.h"

namespace mg {

StridedIndexer make_indexer(const Shape& shape, const Shape& strides);
// Rewrites a walk over `shape` by several operands (each with its own strides, same rank) as an
// equivalent walk over fewer dims: drops size-1 dims and merges dim d into d+1 wherever every
// operand has stride[d] == stride[d+1] * shape[d+1]. The row-major order of the elements is
// unchanged, so a strided kernel given the result touches the same elements in the same order,
// with fewer index divisions (a contiguous operand collapses to one dim).
void coalesce_dims(Shape& shape, std::initializer_list<Shape*> strides);
inline StridedIndexer make_indexer(const Tensor& t) { return make_indexer(t.shape(), t.strides()); }

} // namespace mg
