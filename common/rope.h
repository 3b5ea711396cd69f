// common/rope.h: rotary position embedding's per-element math, written once for the CPU loop and
// the CUDA kernel (MG_HD), so both devices compute the same angles in double.
//
// GPT-NeoX's rotary embedding on one head vector x (Dh values) at position t, rotating its first
// R = rotary_dims values (R even; the rest pass through), h = R / 2:
//   theta_i = base^(-2i / R),  a = t * theta_i,  i in [0, h)
//   y_i     = x_i cos a - x_{i+h} sin a           (pairs (i, i + h): "rotate_half", not (2i, 2i+1))
//   y_{i+h} = x_{i+h} cos a + x_i sin a
//   y_j     = x_j                                  (j >= R)
// The map is a rotation of each pair, so its transpose is the rotation by -a: the backward is
// the same function with sign = -1 applied to the incoming gradient.
#pragma once
#include <cmath>
#include <cstdint>

#include "tensor/indexing.h"

namespace mg {

// theta_i = base^(-2i / R), in double on both devices.
MG_HD double rope_inv_freq(int64_t i, int64_t rotary_dims, double base) {
    using std::pow;
    return pow(base, -double(2 * i) / double(rotary_dims));
}

// y_j (j < R) of one head vector `row` given its pair's c = cos a and s = sign sin a.
template <typename T> MG_HD T rope_rotate(const T* row, int64_t j, int64_t h, double c, double s) {
    if (j < h) return T(double(row[j]) * c - double(row[j + h]) * s);
    return T(double(row[j]) * c + double(row[j - h]) * s);
}

// y_j of one head vector `row` (Dh values) at position t; sign -1 rotates by -a (the backward).
template <typename T>
MG_HD T rope_element(const T* row, int64_t j, int64_t t, int64_t rotary_dims, double base, double sign) {
    using std::cos; using std::sin;
    if (j >= rotary_dims) return row[j];
    const int64_t h = rotary_dims / 2, i = j < h ? j : j - h;
    const double a = double(t) * rope_inv_freq(i, rotary_dims, base);
    return rope_rotate(row, j, h, cos(a), sign * sin(a));
}

} // namespace mg
