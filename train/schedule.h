// train/schedule.h: learning-rate schedules as pure functions of the optimizer step.
//
// `step` is the number of optimizer steps already taken (0 for the first step), and the value is
// the lr that step uses; this matches transformers' get_cosine_schedule_with_warmup as the
// paper's trainer drives it (the scheduler advances after each optimizer step, so step 0 runs at
// lr 0 when there is warmup). With W warmup steps and T total steps:
//   warmup    step < W:  lr = base * step / W
//   cosine    step >= W: lr = min + (base - min) * (1 + cos(pi * min(1, (step - W) / (T - W)))) / 2
//   constant  step >= W: lr = base
// W = floor(warmup_fraction * T) (SPEC §5: 10%), or warmup_steps when set. Steps past T stay at
// the final value (min for cosine).
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace mg::train {

enum class ScheduleKind { Constant, Cosine };
std::string_view schedule_name(ScheduleKind k); // "constant" | "cosine"
ScheduleKind parse_schedule(std::string_view s);

struct LrSchedule {
    ScheduleKind kind = ScheduleKind::Cosine;
    double base_lr = 1e-3;
    double min_lr = 0;              // cosine's floor
    int64_t total_steps = 0;        // T
    double warmup_fraction = 0.1;   // of T; ignored when warmup_steps is set
    std::optional<int64_t> warmup_steps;

    int64_t warmup() const; // W
    double at(int64_t step) const;
};

} // namespace mg::train
