// ops/multi_tensor.h: in-place ops over lists of tensors, for the optimizer, gradient clipping and
// the NaN/Inf guard (train/ calls these; it never launches kernels itself). No autograd.
//
// CPU tensors get one (OpenMP) loop each. CUDA tensors are grouped by (device, dtype), and each
// group is covered by one launch per cuda::kSlotsPerLaunch tensors (cuda/multi_tensor.h), so these
// phases cost a handful of launches per step, not one per parameter. The per-element math is
// common/optim.h's, the same on both devices. Every tensor must be contiguous, f32 or f64.
#pragma once
#include <cstdint>
#include <vector>

#include "common/optim.h"
#include "tensor/runtime.h"
#include "tensor/tensor.h"

namespace mg {

// One tensor's AdamW step: p, m (first moment) and v (second moment) updated in place from the
// gradient g with the coefficients c (adamw_update in common/optim.h). p, m, v, g: one shape,
// dtype and device.
struct AdamWTensors {
    Tensor p, m, v, g;
    AdamWCoef c;
};
// skip_words: at most one tensor per CUDA device (NonfiniteScan::skip_words()); when the first
// 64-bit word of a device's skip tensor is non-zero by the time the kernels run, that device's
// tensors are left unchanged. CPU tensors are always stepped (the CPU guard has already thrown).
void adamw_step_(const std::vector<AdamWTensors>& items, const std::vector<Tensor>& skip_words = {});

// x = clamp(x, -c, c) for every defined tensor (NaN stays NaN, so the guard still sees it); c > 0.
void clamp_(const std::vector<Tensor>& xs, double c);

// Finds the non-finite values of many tensors: per tensor, their count, the first one's flat index
// and the value (NaN, +Inf or -Inf). CPU tensors are scanned at once; CUDA tensors by one
// multi-tensor launch per device and dtype, whose findings (integer atomics: the result does not
// depend on the order) come back asynchronously, so constructing a scan never waits for the GPU.
class NonfiniteScan {
public:
    struct Finding {
        int64_t count = 0;  // 0: every value is finite
        int64_t first = -1; // flat index of the first non-finite value
        double value = 0;   // NaN, +Inf or -Inf
        // "has 3 non-finite values; the first is nan at index (0,5) (flat 5)" for a tensor of `shape`
        std::string describe(const Shape& shape) const;
    };
    NonfiniteScan() = default;
    // Undefined tensors are allowed (and finite); defined ones must be f32 or f64.
    explicit NonfiniteScan(const std::vector<Tensor>& xs);
    // Waits for the CUDA findings (not for later work); one per tensor, in list order.
    const std::vector<Finding>& findings();
    // One i32 tensor per CUDA device scanned, whose first 64-bit word (elements 0 and 1) becomes
    // non-zero when that device saw a non-finite value: adamw_step_'s skip words.
    std::vector<Tensor> skip_words() const;

private:
    struct DeviceWords {
        int device = -1;
        std::vector<size_t> which; // the tensors scanned on this device, in list order
        Tensor words;              // 1 + 2 which.size() u64 words in i32 storage (cuda/optim.h's layout)
        AsyncRead read;
    };
    std::vector<Finding> findings_;
    std::vector<DeviceWords> devices_;
    bool done_ = true;
};

} // namespace mg
