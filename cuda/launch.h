// cuda/launch.h: launch arithmetic behind one helper, so kernels read as the math they compute.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cuda/check.h"

namespace mg::cuda {

constexpr int kBlock = 256;

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for n threads of kBlock, capped so grid-stride loops cover the rest.
inline unsigned blocks_for(int64_t n, int block = kBlock) {
    int64_t b = ceil_div(n, block);
    if (b < 1) b = 1;
    return unsigned(b > 65535 * 32 ? 65535 * 32 : b);
}

// launch_linear(kernel, n, args...): one thread per element (grid-stride inside the kernel),
// on the default stream, checked.
template <typename Kernel, typename... Args>
void launch_linear(Kernel kernel, int64_t n, Args... args) {
    if (n == 0) return;
    kernel<<<blocks_for(n), kBlock>>>(n, args...);
    CUDA_CHECK_LAUNCH();
}

// A kernel launched with more than 48 KiB of dynamic shared memory has to ask for it first (the
// attribute is the kernel's, so asking again is harmless; it costs a driver call of a microsecond).
template <typename Kernel> void allow_dynamic_smem(Kernel kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

} // namespace mg::cuda

// for (int64_t i : grid_stride(n)) style loop for kernels launched by launch_linear.
#define MG_GRID_LOOP(i, n)                                                                  \
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);              \
         i += int64_t(blockDim.x) * gridDim.x)
