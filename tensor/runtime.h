// tensor/runtime.h: the device runtime as the layers above tensor/ see it: which devices exist,
// their allocator's statistics, and reads of a tensor's bytes that do not stall the device.
// cuda/runtime.h sits below tensor/ and is included only by tensor/ and ops/ (and cuda/ itself);
// autograd/, nn/, data/ and train/ come here instead. A CPU-only build has no CUDA device.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/runtime.h"
#include "tensor/tensor.h"

namespace mg {

bool cuda_compiled();      // false in a CPU-only build (CUDA=0)
int cuda_device_count();   // 0 without CUDA or without a visible GPU
std::string device_name(Device d); // "cpu", or the GPU's name
// The caching allocator's counters for a CUDA device (see cuda/runtime.h): bytes in use, their
// peak, bytes reserved, cudaMalloc calls.
using cuda::MemoryStats;
MemoryStats memory_stats(Device d);
// This machine's physical memory in bytes (0 when the system does not say): the bound a data
// generator checks its estimate against before it allocates, so that an absurd example count
// gives an error naming the count rather than std::bad_alloc.
uint64_t host_memory_bytes();
// "512 B", "3.4 KiB", "2.0 GiB", "1.8 PiB": a byte count for a message.
std::string format_bytes(double bytes);

// nbytes between host memory and memory on device d (a CPU device: memcpy), ordered with the
// device's work: for a few scalars at a time, such as gradcheck's perturbations. Bulk transfers
// are Tensor::to.
void read_device_bytes(void* host_dst, const void* src, size_t nbytes, Device d);
void write_device_bytes(void* dst, const void* host_src, size_t nbytes, Device d);

// A tensor's bytes on the host without waiting for the device: the copy is queued behind the work
// already issued on the tensor's device, and wait() blocks only until it has landed (not for
// work queued later). A CPU tensor is read in place. The trainer reads each step's losses this way
// one step late, and the NaN/Inf guard its findings, so the host never idles the GPU.
class AsyncRead {
public:
    AsyncRead() = default;
    explicit AsyncRead(const Tensor& t); // t contiguous; the copy is queued now
    bool valid() const { return source_.defined(); }
    // The numel() * dtype_size() bytes: for a CUDA tensor, a host copy of them as they were when
    // the read was queued (valid until this object is reassigned or destroyed); for a CPU tensor,
    // its own data.
    const void* wait();
    template <typename T> const T* wait_as() { return static_cast<const T*>(wait()); }

private:
    Tensor source_; // kept alive until the copy has landed
    cuda::PendingRead read_;
};

} // namespace mg
