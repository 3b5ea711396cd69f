// cuda/index_check.h: out-of-range indices seen by CUDA kernels, reported without a host sync.
//
// A kernel that reads through an index (an embedding id, a cross-entropy target) must never
// read out of bounds, and the caller must hear about a bad index. Copying a flag back after
// every launch would make the host wait for the GPU at every call, which mambagrad avoids
// (host reads of CUDA data synchronise; nothing else does). So each device owns one word per
// check in host-mapped pinned memory (cudaHostAlloc; host memory, not device memory, so the
// caching allocator is not involved): the kernel writes the bad index's position and value into
// it directly, and the op reads and clears it on the host, without a copy or a sync, at its
// next call on that device (forward and backward) and throws there.
//
// The trade-off, stated plainly: the error surfaces at a later call, not the offending one; the
// offending call's output holds NaN where the bad index was (so a loss turns NaN at once); and
// a program that makes no further call on the device never hears of it. A host-side check
// would be exact but would synchronise at every call.
#pragma once
#include <cstdint>

namespace mg::cuda {

enum class IndexCheck : int { embedding = 0, cross_entropy = 1 };
inline constexpr int kIndexChecks = 2;

// Device-visible pointer to the word of `which` on `device` (0: no error recorded).
unsigned long long* index_error_word(int device, IndexCheck which);
// True when a kernel recorded an error since the last call: fills the flat position and the
// value of the bad index, and clears the word. Never waits for the device.
bool take_index_error(int device, IndexCheck which, int64_t* position, int64_t* value);

#if defined(__CUDACC__)
// Called by a kernel thread that met index `value` at flat `position` (< 2^31). Any one of
// several racing writers wins; every one of them names a genuinely bad index.
__device__ __forceinline__ void record_index_error(unsigned long long* word, int64_t position, int32_t value) {
    *reinterpret_cast<volatile unsigned long long*>(word) =
        ((unsigned long long)(position + 1) << 32) | (unsigned long long)(uint32_t)value;
}
#endif

} // namespace mg::cuda
