// tensor/runtime.cpp: see tensor/runtime.h.
#include "tensor/runtime.h"

#include <unistd.h>

#include <cstring>

#include "tensor/check.h"

namespace mg {

bool cuda_compiled() { return cuda::built_with_cuda(); }
int cuda_device_count() { return cuda::device_count(); }

std::string device_name(Device d) {
    if (d.is_cpu()) return "cpu";
    MG_CHECK(d.index < cuda::device_count(), "device_name: {} is not visible ({} CUDA device(s))", d.str(),
             cuda::device_count());
    return cuda::device_name(d.index);
}

MemoryStats memory_stats(Device d) {
    MG_CHECK(d.is_cuda(), "memory_stats: {} is not a CUDA device (the CPU allocator keeps no statistics)", d.str());
    return cuda::memory_stats(d.index);
}

uint64_t host_memory_bytes() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
}

std::string format_bytes(double bytes) {
    static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (bytes >= 1024 && u < 6) bytes /= 1024, ++u;
    return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, units[u]);
}

void read_device_bytes(void* host_dst, const void* src, size_t nbytes, Device d) {
    if (d.is_cpu()) std::memcpy(host_dst, src, nbytes);
    else cuda::copy_d2h(host_dst, src, nbytes, d.index);
}
void write_device_bytes(void* dst, const void* host_src, size_t nbytes, Device d) {
    if (d.is_cpu()) std::memcpy(dst, host_src, nbytes);
    else cuda::copy_h2d(dst, host_src, nbytes, d.index);
}

AsyncRead::AsyncRead(const Tensor& t) : source_(t) {
    MG_CHECK(t.defined() && t.is_contiguous(), "AsyncRead: the tensor is {}, expected a defined contiguous tensor",
             t.defined() ? t.desc() : std::string("undefined"));
    if (t.device().is_cuda())
        read_ = cuda::PendingRead(t.raw_data(), size_t(t.numel()) * dtype_size(t.dtype()), t.device().index);
}

const void* AsyncRead::wait() {
    MG_CHECK(valid(), "AsyncRead::wait: nothing was read");
    return source_.device().is_cpu() ? source_.raw_data() : read_.wait();
}

} // namespace mg
