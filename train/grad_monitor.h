// train/grad_monitor.h: warns when a parameter's gradient norm grows by orders of magnitude.
//
// The trainer feeds it each parameter's gradient norm (before clipping) at every logged step.
// A parameter whose norm exceeds `factor` times the median of its last `window` logged norms
// (once at least `min_history` are known) gives one warning naming it, the step, the norm and
// the median; the same parameter is not named again until its norm has come back under the
// threshold. This is how a divergence such as global selection's at the tiny size
// (docs/global_selection.md) shows itself hundreds of steps before the loss does.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace mg::train {

struct GradNormWarning {
    int64_t step = 0;
    std::string name;
    double norm = 0, median = 0;
    std::string message() const; // "step 400: gradient norm of 'x' is 57.1, 120x its running median 0.47"
};

class GradNormMonitor {
public:
    explicit GradNormMonitor(double factor = 100.0, int64_t window = 50, int64_t min_history = 5)
        : factor_(factor), window_(window), min_history_(min_history) {}
    // names[i] and norms[i] belong together; the names must be the same at every call.
    std::vector<GradNormWarning> observe(int64_t step, const std::vector<std::string>& names,
                                         const std::vector<double>& norms);

    // What the monitor remembers, per parameter: its recent norms (oldest first) and whether it
    // is in a warned stretch. A resumed run carries it in the checkpoint, so that it warns as
    // the uninterrupted run would.
    struct Memory {
        std::vector<std::vector<double>> history;
        std::vector<bool> warned;
        bool operator==(const Memory&) const = default;
    };
    Memory memory() const;
    void restore(const Memory& m); // throws when the lists differ in length

private:
    struct Track {
        std::deque<double> history;
        bool warned = false;
    };
    double factor_;
    int64_t window_, min_history_;
    std::vector<Track> tracks_;
};

} // namespace mg::train
