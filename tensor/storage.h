// tensor/storage.h: a block of memory on one device, shared by every view of it.
#pragma once
#include <cstddef>
#include <memory>

#include "tensor/device.h"

namespace mg {

struct Storage {
    void* data = nullptr;
    size_t nbytes = 0;
    Device device;

    // CPU memory is 64-byte aligned; CUDA memory comes from the caching allocator
    // (cuda/allocator.h), never from one cudaMalloc per tensor.
    static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
    ~Storage();
    Storage() = default;
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
};

} // namespace mg
