// train/guard.h: the NaN/Inf guard. After backward, check the loss and the gradients (or any
// named tensors) and stop the run with an mg::Error that says where the first non-finite value is:
//
//   NaN/Inf guard: step 12: gradient 'layers.0.mixer.A_log' ((8,16) f32 cpu) has 3 non-finite
//   values; the first is nan at index (0,5) (flat 5)
//
// It comes in two halves so that a CUDA run never makes the host wait for the GPU:
// - FiniteProbe's constructor queues the checks (ops/multi_tensor.h's NonfiniteScan). CPU tensors
//   are scanned in place at once. CUDA tensors are probed by one multi-tensor launch per device
//   and dtype, which counts each tensor's non-finite values and finds the first one's flat index
//   and kind on the device; the findings are copied back asynchronously (AsyncRead).
// - check() waits for that copy (not for later work) and throws naming the first offending
//   tensor in list order.
// skip_words() are the device words AdamW::step takes so that a step whose gradients are not
// finite leaves the parameters alone, even though check() runs after the step was queued. The
// trainer checks each step one step later, when its readback has long arrived.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ops/multi_tensor.h"
#include "train/optim.h"

namespace mg::train {

class FiniteProbe {
public:
    FiniteProbe() = default;
    // Probes every floating tensor of `tensors` (undefined and integer tensors are skipped); `what`
    // names the kind in the message ("gradient", "parameter"). With `loss` (a defined float tensor:
    // the loss, or its parts such as one per micro-batch) the loss is probed first and reported
    // as "the loss is nan".
    FiniteProbe(int64_t step, const NamedTensors& tensors, std::string_view what = "gradient",
                const Tensor& loss = Tensor());
    FiniteProbe(FiniteProbe&&) noexcept = default;
    FiniteProbe& operator=(FiniteProbe&&) noexcept = default;

    int64_t step() const { return step_; }
    // Waits for the CUDA findings; throws mg::Error when anything was non-finite. Idempotent.
    void check();
    // One tensor per CUDA device probed, whose first 64-bit word (its i32 elements 0 and 1) is
    // non-zero when that device saw a non-finite value (AdamW::step's skip words).
    std::vector<Tensor> skip_words() const;

private:
    struct Entry {
        std::string name, desc;
        Shape shape;
        bool is_loss = false;
    };
    int64_t step_ = 0;
    std::string what_;
    std::vector<Entry> entries_;
    NonfiniteScan scan_; // one tensor per entry
    bool checked_ = false;
};

// The two halves at once: throws when any floating tensor in `tensors` holds NaN or Inf, naming
// the first offending tensor in list order.
void check_finite(int64_t step, const NamedTensors& tensors, std::string_view what = "gradient");

// The loss first, then the gradients of `params` (their .grad()).
void check_finite(int64_t step, double loss, const NamedTensors& params);

// The gradients of `params` as named tensors (undefined where a parameter has none).
NamedTensors named_grads(const NamedTensors& params);

} // namespace mg::train
