// cuda/runtime.cu: device queries, checked copies, error strings, and the caching allocator.
#include <cublas_v2.h>
#include <cufft.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/runtime.h"

namespace mg::cuda {

namespace detail {

void fail(const char* lib, const char* call, const char* file, int line, const std::string& what) {
    std::string msg = std::string(lib) + " error: " + what + " in `" + call + "` at " + file + ":" +
                      std::to_string(line);
    if (what.find("out of memory") != std::string::npos)
        msg += " (hint: lower the batch size or sequence length; mg::cuda::memory_stats shows "
               "what is held)";
    if (what.find("no CUDA-capable device") != std::string::npos)
        msg += " (hint: no GPU is visible; use --device cpu)";
    throw Error(msg);
}

const char* cublas_status_str(int s) {
    switch (cublasStatus_t(s)) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "unknown cuBLAS status";
    }
}

const char* cufft_status_str(int s) {
    switch (cufftResult(s)) {
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    default: return "unknown cuFFT status";
    }
}

} // namespace detail

bool built_with_cuda() { return true; }

int device_count() {
    static int n = [] {
        int c = 0;
        // No GPU (the CI machine) is not an error: it means zero devices.
        if (cudaGetDeviceCount(&c) != cudaSuccess) {
            cudaGetLastError();
            return 0;
        }
        return c;
    }();
    return n;
}

static void check_device(int device) {
    int n = device_count();
    if (device < 0 || device >= n)
        throw Error("cuda: device cuda:" + std::to_string(device) + " requested, but " +
                    std::to_string(n) + " CUDA device(s) are visible" +
                    (n == 0 ? " (no GPU on this machine; use the cpu device)" : ""));
}

std::string device_name(int device) {
    check_device(device);
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    return p.name;
}

void set_device(int device) {
    check_device(device);
    CUDA_CHECK(cudaSetDevice(device));
}

int current_device() {
    int d = 0;
    CUDA_CHECK(cudaGetDevice(&d));
    return d;
}

void synchronize(int device) {
    DeviceGuard g(device);
    CUDA_CHECK(cudaDeviceSynchronize());
}

DeviceGuard::DeviceGuard(int device) {
    check_device(device);
    prev_ = current_device();
    if (prev_ != device) CUDA_CHECK(cudaSetDevice(device));
}
DeviceGuard::~DeviceGuard() {
    if (prev_ >= 0) cudaSetDevice(prev_);
}

// ---- caching allocator ----------------------------------------------------------------------
// Sizes are rounded up (512 B below 1 MiB, 2 MiB above) and freed blocks are kept in a per-device
// multimap by size. A request takes the smallest cached block that fits, if that block is not
// more than 25% (or 4 MiB) larger; otherwise it calls cudaMalloc. When cudaMalloc runs out of
// memory, the cache is returned to the driver and the call retried once.
namespace {

constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = 2u << 20;
constexpr size_t kSmallLimit = 1u << 20;

size_t round_size(size_t n) {
    if (n == 0) n = 1;
    size_t r = n < kSmallLimit ? kSmallRound : kLargeRound;
    return (n + r - 1) / r * r;
}

struct DeviceCache {
    std::multimap<size_t, void*> free_blocks;   // size -> ptr
    std::map<void*, size_t> live;               // ptr -> size, handed out
    MemoryStats stats;
};

struct Allocator {
    std::mutex mu;
    std::vector<DeviceCache> dev;

    DeviceCache& cache(int device) {
        if (dev.empty()) dev.resize(size_t(device_count()));
        return dev.at(size_t(device));
    }

    void release_cached(int device) {
        DeviceCache& c = cache(device);
        DeviceGuard g(device);
        for (auto& [size, p] : c.free_blocks) {
            CUDA_CHECK(cudaFree(p));
            c.stats.reserved -= size;
        }
        c.free_blocks.clear();
    }
};

Allocator& allocator() {
    static Allocator* a = new Allocator(); // never destroyed: frees may run during exit
    return *a;
}

} // namespace

void* alloc(size_t nbytes, int device) {
    check_device(device);
    Allocator& a = allocator();
    std::lock_guard<std::mutex> lock(a.mu);
    DeviceCache& c = a.cache(device);
    size_t size = round_size(nbytes);
    c.stats.num_alloc++;
    void* p = nullptr;
    size_t got = size;
    auto it = c.free_blocks.lower_bound(size);
    size_t slack = size / 4 > (4u << 20) ? size / 4 : (4u << 20);
    if (it != c.free_blocks.end() && it->first <= size + slack) {
        got = it->first;
        p = it->second;
        c.free_blocks.erase(it);
    } else {
        DeviceGuard g(device);
        cudaError_t err = cudaMalloc(&p, size);
        if (err == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            a.release_cached(device);
            err = cudaMalloc(&p, size);
        }
        if (err != cudaSuccess) {
            cudaGetLastError();
            throw Error("cuda: out of memory allocating " + std::to_string(nbytes) +
                        " bytes on cuda:" + std::to_string(device) + " (" +
                        std::to_string(c.stats.allocated) + " bytes in use, peak " +
                        std::to_string(c.stats.peak_allocated) + "): " + cudaGetErrorString(err));
        }
        c.stats.num_cuda_malloc++;
        c.stats.reserved += size;
    }
    c.live[p] = got;
    c.stats.allocated += got;
    if (c.stats.allocated > c.stats.peak_allocated) c.stats.peak_allocated = c.stats.allocated;
    return p;
}

void free(void* ptr, int device) {
    if (!ptr) return;
    Allocator& a = allocator();
    std::lock_guard<std::mutex> lock(a.mu);
    DeviceCache& c = a.cache(device);
    auto it = c.live.find(ptr);
    if (it == c.live.end()) return; // not ours: ignore rather than corrupt the cache
    c.stats.allocated -= it->second;
    c.free_blocks.emplace(it->second, ptr);
    c.live.erase(it);
}

MemoryStats memory_stats(int device) {
    check_device(device);
    Allocator& a = allocator();
    std::lock_guard<std::mutex> lock(a.mu);
    return a.cache(device).stats;
}

void reset_peak_memory(int device) {
    check_device(device);
    Allocator& a = allocator();
    std::lock_guard<std::mutex> lock(a.mu);
    DeviceCache& c = a.cache(device);
    c.stats.peak_allocated = c.stats.allocated;
}

void empty_cache() {
    Allocator& a = allocator();
    std::lock_guard<std::mutex> lock(a.mu);
    for (int d = 0; d < device_count(); ++d) a.release_cached(d);
}

// ---- pinned host blocks ----------------------------------------------------------------------
// Pinned (page-locked) host memory with an event that marks when the device is done with it.
// cudaHostAlloc is slow (tens of microseconds or more), so blocks are pooled per device and
// reused for the life of the process.
namespace {

struct PinnedBlock {
    void* host = nullptr;
    cudaEvent_t event = nullptr;
    size_t capacity = 0;
};

class PinnedPool {
public:
    // A block of at least n bytes for `device` whose previous use is finished.
    PinnedBlock take(size_t n, int device) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto& free = free_[device];
            for (size_t i = 0; i < free.size(); ++i)
                if (free[i].capacity >= n) {
                    PinnedBlock b = free[i];
                    free.erase(free.begin() + std::ptrdiff_t(i));
                    return b;
                }
        }
        PinnedBlock b;
        b.capacity = std::max<size_t>(n, 4096);
        DeviceGuard g(device);
        CUDA_CHECK(cudaHostAlloc(&b.host, b.capacity, cudaHostAllocPortable));
        CUDA_CHECK(cudaEventCreateWithFlags(&b.event, cudaEventDisableTiming));
        return b;
    }
    // Back to the pool. The caller has made sure, or `event` will tell, that the device is done.
    void give(PinnedBlock b, int device) {
        std::lock_guard<std::mutex> lock(mu_);
        free_[device].push_back(b);
    }

private:
    std::mutex mu_;
    std::map<int, std::vector<PinnedBlock>> free_;
};

PinnedPool& pinned_pool() {
    static PinnedPool* p = new PinnedPool; // never destroyed: blocks may outlive static teardown
    return *p;
}

// Staging for small host-to-device copies: a ring of pinned slots per device. A slot is reused
// only after its event says the copy that last read it is done (normally long ago).
class StagingRing {
public:
    static constexpr int kSlots = 16;
    void copy(void* dst, const void* src, size_t n, int device) {
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<PinnedBlock>& ring = rings_[device];
        if (ring.empty())
            for (int i = 0; i < kSlots; ++i) ring.push_back(pinned_pool().take(kStagedCopyBytes, device));
        size_t& next = next_[device];
        PinnedBlock& b = ring[next];
        next = (next + 1) % ring.size();
        CUDA_CHECK(cudaEventSynchronize(b.event)); // the slot's previous copy has read it
        std::memcpy(b.host, src, n);
        CUDA_CHECK(cudaMemcpyAsync(dst, b.host, n, cudaMemcpyHostToDevice, 0));
        CUDA_CHECK(cudaEventRecord(b.event, 0));
    }

private:
    std::mutex mu_;
    std::map<int, std::vector<PinnedBlock>> rings_;
    std::map<int, size_t> next_;
};

} // namespace

// ---- copies ---------------------------------------------------------------------------------
void copy_h2d(void* dst, const void* src, size_t n, int device) {
    if (n == 0) return;
    DeviceGuard g(device);
    if (n <= kStagedCopyBytes) {
        static StagingRing* ring = new StagingRing;
        ring->copy(dst, src, n, device);
        return;
    }
    CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
}
void copy_d2h(void* dst, const void* src, size_t n, int device) {
    if (n == 0) return;
    DeviceGuard g(device);
    CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
}
void copy_d2d(void* dst, int dst_device, const void* src, int src_device, size_t n) {
    if (n == 0) return;
    if (dst_device == src_device) {
        DeviceGuard g(dst_device);
        CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice));
    } else {
        CUDA_CHECK(cudaMemcpyPeer(dst, dst_device, src, src_device, n));
    }
}

// ---- PendingRead --------------------------------------------------------------------------------
PendingRead::PendingRead(const void* device_src, size_t n, int device) : nbytes_(n), device_(device) {
    PinnedBlock b = pinned_pool().take(n, device);
    host_ = b.host;
    event_ = b.event;
    capacity_ = b.capacity;
    DeviceGuard g(device);
    if (n) CUDA_CHECK(cudaMemcpyAsync(host_, device_src, n, cudaMemcpyDeviceToHost, 0));
    CUDA_CHECK(cudaEventRecord(cudaEvent_t(event_), 0));
}
PendingRead::PendingRead(PendingRead&& o) noexcept
    : host_(o.host_), event_(o.event_), capacity_(o.capacity_), nbytes_(o.nbytes_), device_(o.device_) {
    o.host_ = nullptr;
}
PendingRead& PendingRead::operator=(PendingRead&& o) noexcept {
    if (this != &o) {
        release();
        host_ = o.host_, event_ = o.event_, capacity_ = o.capacity_, nbytes_ = o.nbytes_, device_ = o.device_;
        o.host_ = nullptr;
    }
    return *this;
}
PendingRead::~PendingRead() { release(); }
void PendingRead::release() {
    if (!host_) return;
    // the copy may still be in flight: the block is reused only after its event (the pool's
    // next user queues its own copy behind it on the same stream, and the staging ring waits)
    cudaEventSynchronize(cudaEvent_t(event_)); // no throw from a destructor; an error resurfaces later
    pinned_pool().give(PinnedBlock{host_, cudaEvent_t(event_), capacity_}, device_);
    host_ = nullptr;
}
const void* PendingRead::wait() {
    if (!host_) throw Error("PendingRead::wait: nothing was queued");
    CUDA_CHECK(cudaEventSynchronize(cudaEvent_t(event_)));
    return host_;
}

} // namespace mg::cuda
