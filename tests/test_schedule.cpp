// tests/test_schedule.cpp: the learning-rate schedules (train/schedule.h).
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/checkpoint.h"
#include "train/clip.h"
#include "train/guard.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;
namespace fs = std::filesystem;

// ==== schedules ===============================================================================

TEST_CASE("schedule: warmup then cosine, values at the boundaries", "[train]") {
    // transformers' get_cosine_schedule_with_warmup lr_lambda, written out independently
    auto hf = [](int64_t s, int64_t W, int64_t T) {
        if (s < W) return double(s) / double(std::max<int64_t>(1, W));
        double prog = double(s - W) / double(std::max<int64_t>(1, T - W));
        return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * prog)));
    };
    LrSchedule s{ScheduleKind::Cosine, 2e-3, 0, 100, 0.1, {}};
    REQUIRE(s.warmup() == 10);
    CHECK(s.at(0) == 0.0);
    CHECK(s.at(5) == Approx(1e-3));
    CHECK(s.at(10) == Approx(2e-3));
    CHECK(s.at(55) == Approx(1e-3));
    CHECK(s.at(100) == Approx(0).margin(1e-18));
    CHECK(s.at(250) == Approx(0).margin(1e-18));
    for (int64_t k = 0; k <= 100; ++k) CHECK(s.at(k) == Approx(2e-3 * hf(k, 10, 100)).margin(1e-15));
    // min_lr floor
    s.min_lr = 1e-4;
    CHECK(s.at(10) == Approx(2e-3));
    CHECK(s.at(55) == Approx(1e-4 + 0.5 * (2e-3 - 1e-4)));
    CHECK(s.at(100) == Approx(1e-4));
    CHECK(s.at(1000) == Approx(1e-4));
    // warmup count as Python's int(0.1 * T): 0.1 * 7 = 0.7 -> 0 warmup steps
    LrSchedule s7{ScheduleKind::Cosine, 1.0, 0, 7, 0.1, {}};
    CHECK(s7.warmup() == 0);
    CHECK(s7.at(0) == 1.0);
    LrSchedule s59{ScheduleKind::Cosine, 1.0, 0, 59, 0.1, {}};
    CHECK(s59.warmup() == 5);
    // explicit warmup steps; W = T (all warmup) ends at the floor
    LrSchedule sw{ScheduleKind::Cosine, 1.0, 0, 4, 0.1, {}};
    sw.warmup_steps = 4;
    CHECK(sw.at(2) == 0.5);
    CHECK(sw.at(4) == 0.0);
}

TEST_CASE("schedule: constant, with and without warmup; bad arguments", "[train]") {
    LrSchedule c{ScheduleKind::Constant, 1e-3, 0, 50, 0.1, {}};
    CHECK(c.at(0) == 0.0);
    CHECK(c.at(4) == Approx(1e-3 * 4 / 5));
    CHECK(c.at(5) == 1e-3);
    CHECK(c.at(49) == 1e-3);
    CHECK(c.at(500) == 1e-3);
    c.warmup_fraction = 0;
    CHECK(c.at(0) == 1e-3);
    CHECK(parse_schedule("cosine") == ScheduleKind::Cosine);
    REQUIRE_ERROR_WITH(parse_schedule("linear"), "schedule", "'linear'");
    REQUIRE_ERROR_WITH(c.at(-1), "schedule", "step is -1");
    c.warmup_steps = 51;
    REQUIRE_ERROR_WITH(c.at(0), "schedule", "warmup_steps is 51");
}
