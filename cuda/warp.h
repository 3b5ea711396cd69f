// cuda/warp.h: warp-level helpers shared by the kernels (device code only).
#pragma once
#include <cuda_runtime.h>

namespace mg::cuda {

// The sum of v over the 32 lanes of a full warp (all lanes must call it), by a butterfly: each step
// adds the same two values in every lane (a + b == b + a), so all lanes end with the same bits, and
// the order of the additions is fixed: deterministic.
template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// max(a, b), except that a NaN in either wins, so a NaN input is not hidden by the max. Symmetric
// (nan_max(a, b) == nan_max(b, a), up to a -0 beside a +0).
template <typename T> __device__ __forceinline__ T nan_max(T a, T b) { return (a > b || a != a) ? a : b; }

// The max of v over the 32 lanes of a full warp (all lanes must call it; a NaN in any lane gives
// NaN), by the same butterfly as warp_sum: every lane ends with the same value (a -0 and a +0 may
// stay apart, which compare equal).
template <typename T> __device__ __forceinline__ T warp_max(T v) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

} // namespace mg::cuda
