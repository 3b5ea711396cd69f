// cuda/runtime_none.cpp: the CUDA runtime of a CPU-only build (CUDA=0). No device is visible and
// every request for device memory says why.
#include "cuda/runtime.h"
#include "tensor/error.h"

namespace mg::cuda {

[[noreturn]] static void no_cuda(const char* what) {
    throw Error(std::string("cuda: ") + what +
                " needs CUDA, but this mambagrad was built without it (CUDA=0 or no nvcc); "
                "use the cpu device or rebuild with nvcc on PATH");
}

bool built_with_cuda() { return false; }
int device_count() { return 0; }
std::string device_name(int) { no_cuda("device_name"); }
void set_device(int) { no_cuda("set_device"); }
int current_device() { no_cuda("current_device"); }
void synchronize(int) { no_cuda("synchronize"); }
DeviceGuard::DeviceGuard(int) { no_cuda("DeviceGuard"); }
DeviceGuard::~DeviceGuard() {}
void* alloc(size_t, int) { no_cuda("alloc"); }
void free(void*, int) {}
MemoryStats memory_stats(int) { no_cuda("memory_stats"); }
void reset_peak_memory(int) { no_cuda("reset_peak_memory"); }
void empty_cache() {}
void copy_h2d(void*, const void*, size_t, int) { no_cuda("copy_h2d"); }
void copy_d2h(void*, const void*, size_t, int) { no_cuda("copy_d2h"); }
void copy_d2d(void*, int, const void*, int, size_t) { no_cuda("copy_d2d"); }
PendingRead::PendingRead(const void*, size_t, int) { no_cuda("PendingRead"); }
PendingRead::PendingRead(PendingRead&&) noexcept {}
PendingRead& PendingRead::operator=(PendingRead&&) noexcept { return *this; }
PendingRead::~PendingRead() {}
const void* PendingRead::wait() { no_cuda("PendingRead::wait"); }
void PendingRead::release() {}

} // namespace mg::cuda
