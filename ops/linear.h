// ops/linear.h: the affine layer of every Mamba projection (in_proj, x_proj, dt_proj, out_proj,
// lm_head).
//
// Shapes: x (..., Din), weight (Dout, Din), bias (Dout) or undefined -> y (..., Dout),
//   y = x @ weight^T + bias
// computed as one GEMM over the M = numel(x) / Din rows of x, reading weight transposed in place
// (GemmArgs tb, no transpose copy); the bias is copied into y first and the GEMM accumulates onto
// it (beta = 1), so the bias costs no extra pass. GPU: cuBLAS; CPU: OpenBLAS or the blocked
// kernel (ops/matmul.h).
//
// Derivatives (g = dL/dy, as (M, Dout)):
//   dx = g @ weight             (M, Din)
//   dweight = g^T @ x           (Dout, Din)   one GEMM over all M rows
//   dbias = sum over rows of g  (Dout)        the deterministic row reduction of ops/reduce.h
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace mg {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// linear(x, weight, bias) with its output cut along the last dim into pieces of the given widths
// (summing to Dout), each its own contiguous tensor (..., w_i): piece i is one GEMM with the
// weight's rows of that piece (a contiguous block, no copy). Equal to split(linear(...), sizes,
// -1) but with no strided pieces to copy: Mamba's in_proj gives x and z this way. Backward: dx
// sums the pieces' GEMMs (beta = 1 after the first), dweight's row blocks are written in place.
std::vector<Tensor> linear_split(const Tensor& x, const Tensor& weight, const std::vector<int64_t>& sizes,
                                 const Tensor& bias = Tensor());

// Reference: out (M, Dout) = x (M, Din) weight^T + bias, three loops in double; bias may be null.
template <typename T>
void linear_ref(double* out, const T* x, const T* weight, const T* bias, int64_t M, int64_t Din, int64_t Dout);

} // namespace mg
