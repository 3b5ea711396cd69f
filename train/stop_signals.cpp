// train/stop_signals.cpp: see train/stop_signals.h.
#include "train/stop_signals.h"

#include <atomic>

namespace mg::train {

namespace {

// The first SIGINT or SIGTERM asks the loop to stop after the step in flight (it is recorded
// here and read between steps); a second one ends the process at once (the default action).
// The count is a lock-free atomic (async-signal-safe): two signals handled at once on two threads
// still have exactly one first.
std::atomic<int> g_stop_count{0};
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int sig) {
    if (g_stop_count.fetch_add(1) > 0) { // the second: at once
        std::signal(sig, SIG_DFL);
        std::raise(sig);
        return;
    }
    g_stop_signal.store(sig);
}

} // namespace

StopSignals::StopSignals() {
    g_stop_count = 0;
    g_stop_signal = 0;
    struct sigaction sa = {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
}

StopSignals::~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    g_stop_count = 0;
    g_stop_signal = 0;
}

int StopSignals::pending() const { return g_stop_signal.load(); }

} // namespace mg::train
