// cuda/index_check.cu: see cuda/index_check.h.
#include <mutex>
#include <vector>

#include "cuda/check.h"
#include "cuda/index_check.h"
#include "cuda/runtime.h"

namespace mg::cuda {

namespace {

// One block of kIndexChecks words per device, allocated on first use and kept for the process.
unsigned long long* words_of(int device) {
    static std::mutex mu;
    static std::vector<unsigned long long*> words;
    std::lock_guard<std::mutex> lock(mu);
    if (words.empty()) words.resize(size_t(device_count()), nullptr);
    unsigned long long*& w = words.at(size_t(device));
    if (!w) {
        DeviceGuard g(device);
        void* host = nullptr;
        CUDA_CHECK(cudaHostAlloc(&host, kIndexChecks * sizeof(unsigned long long),
                                 cudaHostAllocMapped | cudaHostAllocPortable));
        auto* h = static_cast<unsigned long long*>(host);
        for (int i = 0; i < kIndexChecks; ++i) h[i] = 0;
        w = h;
    }
    return w;
}

} // namespace

unsigned long long* index_error_word(int device, IndexCheck which) {
    unsigned long long* host = words_of(device) + int(which);
    void* dev = nullptr;
    // With unified addressing (every 64-bit platform CUDA 13 supports) this returns `host`.
    CUDA_CHECK(cudaHostGetDevicePointer(&dev, host, 0));
    return static_cast<unsigned long long*>(dev);
}

bool take_index_error(int device, IndexCheck which, int64_t* position, int64_t* value) {
    volatile unsigned long long* w = words_of(device) + int(which);
    unsigned long long v = *w;
    if (v == 0) return false;
    *w = 0;
    *position = int64_t(v >> 32) - 1;
    *value = int64_t(int32_t(uint32_t(v & 0xffffffffULL)));
    return true;
}

} // namespace mg::cuda
