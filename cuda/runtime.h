// cuda/runtime.h: the CUDA runtime as the rest of mambagrad sees it. Host-only declarations with
// no CUDA headers, so every .cpp can include it. Built with CUDA=0, device_count() is 0 and the
// memory functions throw mg::Error saying the build has no CUDA (cuda/runtime_none.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mg::cuda {

bool built_with_cuda();
int device_count();                 // 0 when built without CUDA or when no GPU is visible
inline bool available() { return device_count() > 0; }
std::string device_name(int device);
void set_device(int device);
int current_device();
void synchronize(int device);

// Makes `device` current for its lifetime and restores the previous one.
class DeviceGuard {
public:
    explicit DeviceGuard(int device);
    ~DeviceGuard();
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;
private:
    int prev_ = -1;
};

// ---- the caching allocator (cuda/allocator.cu) ----------------------------------------------
// Freed blocks go back to a per-device cache and are reused by later allocations of a similar
// size, so steady-state training calls cudaMalloc zero times per step. All work runs on one
// stream per device, so a block freed on the host can be handed out again at once.
void* alloc(size_t nbytes, int device);
void free(void* ptr, int device);
struct MemoryStats {
    size_t allocated = 0;       // bytes handed out and not yet freed
    size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
    size_t reserved = 0;        // bytes held from cudaMalloc (allocated + cached)
    uint64_t num_cuda_malloc = 0; // cudaMalloc calls so far
    uint64_t num_alloc = 0;       // alloc() calls so far
};
MemoryStats memory_stats(int device);
void reset_peak_memory(int device);
void empty_cache(); // returns every cached (unused) block to the driver

// ---- copies -----------------------------------------------------------------------------------
// All three are ordered with the device's work (one stream per device). copy_d2h returns when the
// bytes are on the host, so it waits for the work queued before it. copy_h2d returns once `src`
// has been read: a copy of at most kStagedCopyBytes goes through a pinned staging buffer and an
// asynchronous copy (the host does not wait for queued kernels, which a pageable cudaMemcpy
// would: that wait made every training batch a device-wide sync); a larger one is a plain
// synchronous copy. copy_d2d never waits.
inline constexpr size_t kStagedCopyBytes = size_t(1) << 20;
void copy_h2d(void* dst, const void* src, size_t nbytes, int device);
void copy_d2h(void* dst, const void* src, size_t nbytes, int device);
void copy_d2d(void* dst, int dst_device, const void* src, int src_device, size_t nbytes);

// A device-to-host copy that the host queues now and reads later: the bytes land in pinned host
// memory in stream order, and wait() blocks only until that copy is done, not for work queued
// after it. The trainer reads each step's loss and NaN/Inf flags this way one step late, so
// the host never drains the GPU's queue in the middle of training. Move-only; the pinned block
// returns to a per-device pool when the object dies.
class PendingRead {
public:
    PendingRead() = default;
    PendingRead(const void* device_src, size_t nbytes, int device); // queues the copy
    PendingRead(PendingRead&& o) noexcept;
    PendingRead& operator=(PendingRead&& o) noexcept;
    PendingRead(const PendingRead&) = delete;
    PendingRead& operator=(const PendingRead&) = delete;
    ~PendingRead();

    bool valid() const { return host_ != nullptr; }
    size_t size() const { return nbytes_; }
    const void* wait(); // blocks until the copy is done; returns the host bytes (nbytes)

private:
    void release();
    void* host_ = nullptr;
    void* event_ = nullptr; // cudaEvent_t
    size_t capacity_ = 0, nbytes_ = 0;
    int device_ = -1;
};

} // namespace mg::cuda
