// train/grad_monitor.cpp: see train/grad_monitor.h.
#include "train/grad_monitor.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tensor/check.h"

namespace mg::train {

std::string GradNormWarning::message() const {
    return fmt::format("step {}: gradient norm of '{}' is {:.4g}, {:.0f}x its running median {:.4g}", step, name, norm,
                       median > 0 ? norm / median : INFINITY, median);
}

std::vector<GradNormWarning> GradNormMonitor::observe(int64_t step, const std::vector<std::string>& names,
                                                      const std::vector<double>& norms) {
    MG_CHECK(names.size() == norms.size(), "GradNormMonitor: {} names for {} norms", names.size(), norms.size());
    if (tracks_.empty()) tracks_.resize(names.size());
    MG_CHECK(tracks_.size() == names.size(), "GradNormMonitor: {} parameters, {} before", names.size(), tracks_.size());
    std::vector<GradNormWarning> out;
    for (size_t i = 0; i < names.size(); ++i) {
        Track& t = tracks_[i];
        const double n = norms[i];
        if (int64_t(t.history.size()) >= min_history_) {
            std::vector<double> h(t.history.begin(), t.history.end());
            std::nth_element(h.begin(), h.begin() + int64_t(h.size() / 2), h.end());
            const double median = h[h.size() / 2];
            const bool high = !(n <= factor_ * median); // a NaN norm counts as high
            if (high && !t.warned) out.push_back({step, names[i], n, median});
            t.warned = high;
        }
        if (std::isfinite(n)) {
            t.history.push_back(n);
            if (int64_t(t.history.size()) > window_) t.history.pop_front();
        }
    }
    return out;
}

GradNormMonitor::Memory GradNormMonitor::memory() const {
    Memory m;
    for (const Track& t : tracks_) {
        m.history.emplace_back(t.history.begin(), t.history.end());
        m.warned.push_back(t.warned);
    }
    return m;
}

void GradNormMonitor::restore(const Memory& m) {
    MG_CHECK(m.history.size() == m.warned.size(), "GradNormMonitor: {} histories for {} warned flags",
             m.history.size(), m.warned.size());
    tracks_.assign(m.history.size(), {});
    for (size_t i = 0; i < tracks_.size(); ++i) {
        const size_t keep = std::min(m.history[i].size(), size_t(window_));
        tracks_[i].history.assign(m.history[i].end() - int64_t(keep), m.history[i].end());
        tracks_[i].warned = m.warned[i];
    }
}

} // namespace mg::train
