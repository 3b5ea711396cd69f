// ops/embedding.h: embedding lookup (gather rows of a table by integer id).
//
// Shapes: ids i32 (B, L) (any shape works: (...)), weight (V, D) f32/f64 -> out (B, L, D),
//   out[b, l, :] = weight[ids[b, l], :]
//
// Derivative (g = dL/dout):  dweight[v, :] = sum over positions (b, l) with ids[b, l] = v of g[b, l, :]
// ids get no gradient.
//
// Determinism: dweight is summed in position order on both devices, so two runs give the same
// bits. CPU: one pass over positions in order (threads split the D columns, never the
// positions). CUDA (cuda/embedding.cu): a stable sort of (id, position) pairs groups each row's
// positions in position order; fixed chunks of the sorted list are summed by one block each,
// and rows whose positions cross a chunk boundary are finished by a second, fixed-order pass.
// No floating-point atomics.
//
// Out-of-range ids (outside [0, V)) are an error. CPU: checked on the host before the kernel;
// the message names the first bad id and its position. CUDA: checked by the kernel without a
// host sync; the bad rows of the output are NaN and the error is raised by the next embedding
// call (forward or backward) on that device (cuda/index_check.h explains the trade-off).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mg {

Tensor embedding(const Tensor& ids, const Tensor& weight);

// ---- kernels (N = B*L positions) -------------------------------------------------------------
// out (N, D) = weight[ids]. ids must be in [0, V) (checked by the caller). Writes (=).
template <typename T>
void embedding_forward_cpu(T* out, const int32_t* ids, const T* weight, int64_t N, int64_t D);
// dweight (V, D) = sum of dout (N, D) rows by id, in position order. Writes (=) every element.
template <typename T>
void embedding_backward_cpu(T* dweight, const T* dout, const int32_t* ids, int64_t N, int64_t V, int64_t D);

// References, in double: the loops above with no parallelism.
template <typename T>
void embedding_ref(double* out, const int32_t* ids, const T* weight, int64_t N, int64_t D);
template <typename T>
void embedding_backward_ref(double* dweight, const T* dout, const int32_t* ids, int64_t N, int64_t V, int64_t D);

} // namespace mg
