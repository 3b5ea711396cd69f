// train/schedule.cpp: see train/schedule.h.
#include "train/schedule.h"

#include <cmath>
#include <numbers>

#include "tensor/check.h"

namespace mg::train {

std::string_view schedule_name(ScheduleKind k) { return k == ScheduleKind::Constant ? "constant" : "cosine"; }
ScheduleKind parse_schedule(std::string_view s) {
    if (s == "constant") return ScheduleKind::Constant;
    if (s == "cosine") return ScheduleKind::Cosine;
    throw Error(fmt::format("schedule: '{}' is not a schedule, expected constant or cosine", s));
}

int64_t LrSchedule::warmup() const {
    MG_CHECK(total_steps >= 0, "schedule: total_steps is {}, expected >= 0", total_steps);
    if (warmup_steps) {
        MG_CHECK(*warmup_steps >= 0 && *warmup_steps <= total_steps,
                 "schedule: warmup_steps is {}, expected in [0, total_steps = {}]", *warmup_steps, total_steps);
        return *warmup_steps;
    }
    MG_CHECK(warmup_fraction >= 0 && warmup_fraction <= 1, "schedule: warmup_fraction is {}, expected in [0, 1]",
             warmup_fraction);
    // as Python's int(fraction * total) (for 0.1 this equals total / 10 for every total)
    return int64_t(std::floor(warmup_fraction * double(total_steps)));
}

double LrSchedule::at(int64_t step) const {
    MG_CHECK(step >= 0, "schedule: step is {}, expected >= 0", step);
    MG_CHECK(min_lr <= base_lr, "schedule: min_lr {} is above base_lr {}", min_lr, base_lr);
    const int64_t W = warmup();
    if (step < W) return base_lr * double(step) / double(W);
    if (kind == ScheduleKind::Constant) return base_lr;
    const int64_t span = total_steps - W;
    const double progress = span <= 0 ? 1.0 : std::min(1.0, double(step - W) / double(span));
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

} // namespace mg::train
