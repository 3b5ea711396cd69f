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

} // namespace mg::cuda
