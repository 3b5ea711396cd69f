// ops/checks.h: the argument checks every op runs at its boundary. Each throws mg::Error
// "<op>: <name> is <shape dtype device>, expected ..." (ops/copy.cpp).
#pragma once
#include <cstdint>

#include "tensor/check.h"
#include "tensor/tensor.h"

namespace mg {

void check_defined(const char* op, const char* name, const Tensor& t);
void check_float(const char* op, const char* name, const Tensor& t);
// a and b must share dtype and device; the message names both tensors.
void check_same(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b);
void check_dim(const char* op, const char* name, const Tensor& t, int64_t ndim);

} // namespace mg
