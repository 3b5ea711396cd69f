// ops/scan_math.h: scalar helpers of the selective scan, compiled for the CPU and CUDA kernels.
#pragma once
#include <cmath>
#include <cstdint>

#include "tensor/indexing.h"

namespace mg::scan {

constexpr double kLog2e = 1.4426950408889634;

// softplus with PyTorch's threshold: x above 20 passes through (log1p(exp x) == x in float there).
template <typename T> MG_HD T softplus(T x) {
    using std::exp; using std::log1p;
    return x <= T(20) ? log1p(exp(x)) : x;
}
// d softplus / dx = sigmoid(x) below the threshold, 1 above.
template <typename T> MG_HD T softplus_grad(T x) {
    using std::exp;
    return x <= T(20) ? T(1) / (T(1) + exp(-x)) : T(1);
}
template <typename T> MG_HD T sigmoid(T x) {
    using std::exp;
    return T(1) / (T(1) + exp(-x));
}

} // namespace mg::scan
