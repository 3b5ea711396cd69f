// ops/copy.h: the non-differentiable copy other ops build on (ops/copy.cpp).
#pragma once

#include "tensor/tensor.h"

namespace mg {

// dst = src elementwise (shapes equal; strides arbitrary; dtypes may differ; src is moved to
// dst's device first if needed). Writes into dst's storage.
void copy_into(const Tensor& dst, const Tensor& src);

} // namespace mg
