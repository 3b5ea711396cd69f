// train/metrics.cpp: see train/metrics.h.
#include "train/metrics.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "data/atomic_file.h"
#include "tensor/check.h"
#include "tensor/json.h"

namespace mg::train {

std::string metrics_kept_on_resume(std::string_view jsonl, int64_t step, int64_t rows, int64_t* kept_rows) {
    std::string kept;
    int64_t n = 0;
    size_t begin = 0;
    while (begin < jsonl.size() && (rows < 0 || n < rows)) {
        size_t end = jsonl.find('\n', begin);
        if (end == std::string_view::npos) end = jsonl.size();
        const std::string_view line = jsonl.substr(begin, end - begin);
        begin = end + 1;
        const nlohmann::json row = parse_json_or_discard(line);
        if (row.is_discarded() || !row.is_object()) continue;
        const auto at = row.find("step");
        if (rows >= 0 || at == row.end() || (at->is_number_integer() && at->get<int64_t>() <= step)) {
            kept.append(line).append("\n");
            ++n;
        }
    }
    if (kept_rows) *kept_rows = n;
    return kept;
}

std::string make_run_dir(const std::string& root, const std::string& name, const nlohmann::json& config) {
    MG_CHECK(!name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos,
             "run directory: name '{}' must be one non-empty path component (no '/')", name);
    const std::filesystem::path dir = std::filesystem::path(root) / name;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    MG_CHECK(!ec, "run directory: cannot create '{}': {}", dir.string(), ec.message());
    data::write_file_atomic((dir / "config.json").string(), config.dump(2) + "\n");
    return dir.string();
}

// ---- metrics.jsonl --------------------------------------------------------------------------

MetricsLog::MetricsLog(const std::string& path, int64_t rows) : path_(path), rows_(rows) {
    f_ = std::fopen(path.c_str(), "a");
    MG_CHECK(f_ != nullptr, "metrics: cannot open '{}' for appending: {}", path, std::strerror(errno));
}

MetricsLog::~MetricsLog() {
    if (f_) std::fclose(f_);
}

void MetricsLog::write(const nlohmann::json& record) {
    MG_CHECK(record.is_object(), "metrics: a record must be a JSON object, got {}", record.type_name());
    // dump() escapes newlines inside strings, so a record is always exactly one line
    const std::string line = record.dump() + "\n";
    MG_CHECK(std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0,
             "metrics: write to '{}' failed: {}", path_, std::strerror(errno));
    ++rows_;
}

// ---- progress -------------------------------------------------------------------------------

std::string format_si(double v) {
    if (!std::isfinite(v)) return "--";
    const double a = std::fabs(v);
    if (a >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
    if (a >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
    if (a >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
    return fmt::format("{:.0f}", v);
}

std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "--";
    const int64_t s = int64_t(seconds + 0.5);
    if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string format_progress(const Progress& p, int bar_width) {
    std::string out;
    auto it = std::back_inserter(out);
    if (p.epochs > 0) fmt::format_to(it, "epoch {}/{} | ", p.epoch, p.epochs);
    if (p.total > 0) {
        const double frac = std::clamp(double(p.step) / double(p.total), 0.0, 1.0);
        fmt::format_to(it, "step {}/{}", p.step, p.total);
        if (bar_width > 0) {
            const int filled = int(frac * bar_width);
            std::string bar(size_t(bar_width), ' ');
            for (int i = 0; i < filled; ++i) bar[size_t(i)] = '=';
            if (filled < bar_width) bar[size_t(filled)] = '>';
            fmt::format_to(it, " [{}]", bar);
        }
        fmt::format_to(it, " {:5.1f}%", 100 * frac);
    } else {
        fmt::format_to(it, "step {}", p.step);
    }
    if (!std::isnan(p.loss)) fmt::format_to(it, " | loss {:.4f}", p.loss);
    if (!std::isnan(p.accuracy)) fmt::format_to(it, " | acc {:.1f}%", 100 * p.accuracy);
    if (!std::isnan(p.tokens_per_s)) fmt::format_to(it, " | {} tok/s", format_si(p.tokens_per_s));
    fmt::format_to(it, " | ETA {}", format_duration(p.eta_s));
    return out;
}

ProgressBar::ProgressBar(std::FILE* out, double tty_interval_s, double plain_interval_s)
    : out_(out), tty_(out != nullptr && ::isatty(::fileno(out)) == 1),
      interval_s_(tty_ ? tty_interval_s : plain_interval_s) {
    MG_CHECK(out != nullptr, "progress bar: the output FILE* is null");
}

ProgressBar::~ProgressBar() {
    if (open_line_) {
        std::fputc('\n', out_);
        std::fflush(out_);
    }
}

void ProgressBar::draw(const Progress& p) {
    const std::string line = format_progress(p);
    if (tty_) {
        std::fprintf(out_, "\r%s\x1b[K", line.c_str()); // clear what a longer earlier line left
        open_line_ = true;
    } else {
        std::fprintf(out_, "%s\n", line.c_str());
    }
    std::fflush(out_);
    last_draw_ = std::chrono::steady_clock::now();
    shown_ = true;
}

void ProgressBar::update(const Progress& p) {
    last_ = p;
    const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_draw_).count();
    if (!shown_ || since >= interval_s_) {
        draw(p);
        pending_ = false;
    } else {
        pending_ = true; // shown by a later update or by finish()
    }
}

void ProgressBar::finish() {
    if (pending_) draw(last_);
    if (open_line_) {
        std::fputc('\n', out_);
        std::fflush(out_);
        open_line_ = false;
    }
    pending_ = false;
}

} // namespace mg::train
