// train/stop_signals.h: Ctrl-C and SIGTERM during training. While a StopSignals lives, the first
// SIGINT or SIGTERM is only recorded (pending() returns it), so the loop can finish the step in
// flight, checkpoint and end cleanly (Trainer::train); a second signal takes the default action at
// once. The previous handlers come back when it is destroyed.
#pragma once
#include <csignal>

namespace mg::train {

class StopSignals {
public:
    StopSignals();
    ~StopSignals();
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;
    int pending() const; // 0, or the first signal received

private:
    struct sigaction old_int_ = {}, old_term_ = {};
};

} // namespace mg::train
