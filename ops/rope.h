// ops/rope.h: rotary position embedding as GPT-NeoX (Pythia) applies it.
//
// Shapes: x (..., L, Dh): the second-to-last dim is the position; for attention's
// (B, H, L, Dh) that is one rotation per (batch, head, position). Position of row l is
// pos_offset + l (pos_offset > 0 when a KV cache already holds pos_offset positions).
// rotary_dims = R: the first R values of each head vector rotate (R even, 0 <= R <= Dh; GPT-NeoX's
// rotary_ndims = int(Dh * rotary_pct)); base 10000 as Pythia.
//   h = R / 2, theta_i = base^(-2i/R), a = t theta_i:
//   y_i = x_i cos a - x_{i+h} sin a,   y_{i+h} = x_{i+h} cos a + x_i sin a,   y_j = x_j (j >= R)
// i.e. transformers' q * cos + rotate_half(q) * sin with cos, sin = cat(freqs, freqs).
// Derivative: the map is a rotation of each pair (i, i+h), so dx = R(-a) dy: the same kernel
// with the sign of the sine flipped. Angles and products are computed in double on both devices
// (common/rope.h), then rounded to x's dtype.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mg {

Tensor rope(const Tensor& x, int64_t rotary_dims, double base = 10000.0, int64_t pos_offset = 0);

// ---- kernels (x contiguous: N rows of L positions of Dh values) -----------------------------
// out = R(sign * a) x. Writes (=); out may not alias x.
template <typename T>
void rope_cpu(T* out, const T* x, int64_t N, int64_t L, int64_t Dh, int64_t rotary_dims, double base,
              int64_t pos_offset, double sign);

// Reference in double, written as transformers does it: x * cos + rotate_half(x) * sin.
template <typename T>
void rope_ref(double* out, const T* x, int64_t N, int64_t L, int64_t Dh, int64_t rotary_dims, double base,
              int64_t pos_offset);

} // namespace mg
