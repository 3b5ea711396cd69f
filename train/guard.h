// train/guard.h: the NaN/Inf guard. After backward, check the loss and the gradients (or any
// named tensors) and stop the run with an mg::Error that says where the first non-finite value is:
//
//   NaN/Inf guard: step 12: gradient 'layers.0.mixer.A_log' ((8,16) f32 cpu) has 3 non-finite
//   values; the first is nan at index (0,5)
//
// Cost: CPU tensors are scanned in place; CUDA tensors are probed by one multi-tensor launch per
// device (cuda/optim.h: a flag per tensor) and the flags read back with ONE host sync per device.
// Only on failure is the offending tensor copied to the host to find the index.
#pragma once
#include <cstdint>
#include <string_view>

#include "train/optim.h"

namespace mg::train {

// Throws when any floating tensor in `tensors` holds NaN or Inf (undefined and i32 tensors are
// skipped); the message names the first offending tensor in list order. `what` names the kind
// in the message ("gradient", "parameter").
void check_finite(int64_t step, const NamedTensors& tensors, std::string_view what = "gradient");

// The loss first, then the gradients of `params` (their .grad()).
void check_finite(int64_t step, double loss, const NamedTensors& params);

} // namespace mg::train
