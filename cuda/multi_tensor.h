// cuda/multi_tensor.h: one launch over many tensors (the optimizer, clipping and the NaN guard
// touch every parameter each step; one launch per tensor made those phases launch-bound on small
// models).
//
// A TensorBatch holds up to kSlotsPerLaunch "slots" (one per tensor: its pointers, size and any
// per-tensor constants) by value in the kernel's parameters, so no table is copied to the device.
// Block b of the launch works on chunk c = b - first_block[s] of the slot s with
// first_block[s] <= b < first_block[s + 1]: elements [c kChunk, (c + 1) kChunk) of that tensor.
// for_each_batch() cuts a slot list into such launches. Host-side code calls it from .cu files
// only (it launches kernels).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/launch.h"
#include "tensor/error.h"

namespace mg::cuda {

// 24 slots of up to 120 bytes stay under the 4 KB kernel-parameter limit of every CUDA version.
constexpr int kSlotsPerLaunch = 24;
constexpr int kMultiBlock = 256;
constexpr int64_t kChunk = 4 * kMultiBlock; // elements per block: 4 per thread

template <typename Slot> struct TensorBatch {
    Slot slot[kSlotsPerLaunch];
    int first_block[kSlotsPerLaunch + 1];
    int count;
};

#ifdef __CUDACC__
// The slot this block works on, and the block's chunk index within it.
template <typename Slot> __device__ inline int slot_of_block(const TensorBatch<Slot>& b, int block, int64_t& chunk) {
    int s = 0;
    while (s + 1 < b.count && b.first_block[s + 1] <= block) ++s;
    chunk = block - b.first_block[s];
    return s;
}

// for (int64_t i : elements of this block's chunk of slot s) style loop; the slot needs a field n.
#define MG_CHUNK_LOOP(i, slot, chunk)                                                              \
    for (int64_t i = (chunk) * ::mg::cuda::kChunk + threadIdx.x,                                   \
                 end_ = ((chunk) + 1) * ::mg::cuda::kChunk < (slot).n ? ((chunk) + 1) * ::mg::cuda::kChunk \
                                                                      : (slot).n;                  \
         i < end_; i += blockDim.x)

// Launches kernel<<<blocks, kMultiBlock>>>(batch, extra...) for each group of up to
// kSlotsPerLaunch slots; slots with n == 0 are skipped.
template <typename Slot, typename Kernel, typename... Extra>
void for_each_batch(const std::vector<Slot>& slots, Kernel kernel, Extra... extra) {
    TensorBatch<Slot> b;
    b.count = 0;
    int blocks = 0;
    auto flush = [&] {
        if (b.count == 0) return;
        b.first_block[b.count] = blocks;
        kernel<<<unsigned(blocks), kMultiBlock>>>(b, extra...);
        CUDA_CHECK_LAUNCH();
        b.count = 0;
        blocks = 0;
    };
    for (const Slot& s : slots) {
        if (s.n == 0) continue;
        // at most 2^25 blocks per tensor (2^35 elements, more than a GPU holds) and per launch,
        // far inside gridDim.x's 2^31 - 1
        const int64_t chunks = ceil_div(s.n, kChunk);
        if (chunks > (int64_t(1) << 25))
            throw Error("multi-tensor launch: a tensor of " + std::to_string(s.n) + " elements exceeds 2^35");
        if (b.count == kSlotsPerLaunch || blocks + chunks > (int64_t(1) << 25)) flush();
        b.slot[b.count] = s;
        b.first_block[b.count] = blocks;
        blocks += int(chunks);
        ++b.count;
    }
    flush();
}
#endif

} // namespace mg::cuda
