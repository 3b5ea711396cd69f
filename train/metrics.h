// train/metrics.h: what a run leaves behind and what it shows while it runs.
//
//   runs/<name>/config.json      the run's config (written atomically)
//   runs/<name>/metrics.jsonl    one JSON object per line, appended and flushed per record
//   a progress line on the terminal:
//     epoch 3/30 | step 120/1000 [======>       ]  12.0% | loss 1.2346 | acc 45.6% | 12.3k tok/s | ETA 1:23:45
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace mg::train {

// Creates <root>/<name>/ (and parents) and writes config.json there atomically (replacing an
// older one: resuming a run rewrites it). Returns the run directory. `name` must be a single
// non-empty path component.
std::string make_run_dir(const std::string& root, const std::string& name, const nlohmann::json& config);

// Appends records to a JSONL file (created if missing). Each write is one line, flushed at once,
// so a crash loses at most the record being written.
class MetricsLog {
public:
    // `rows`: the rows the file already holds (a resumed run's kept log).
    explicit MetricsLog(const std::string& path, int64_t rows = 0);
    ~MetricsLog();
    MetricsLog(const MetricsLog&) = delete;
    MetricsLog& operator=(const MetricsLog&) = delete;
    // `record` must be a JSON object.
    void write(const nlohmann::json& record);
    const std::string& path() const { return path_; }
    int64_t rows() const { return rows_; } // rows in the file: those it held, and those written since

private:
    std::string path_;
    int64_t rows_ = 0;
    std::FILE* f_ = nullptr;
};

// The rows of a metrics.jsonl text that a run resumed from a checkpoint keeps (an interrupted run
// may have logged past its last checkpoint). With `rows` >= 0 (the checkpoint says how many rows
// the log held): the first `rows` lines that are JSON objects. With -1 (an older checkpoint):
// the JSON objects whose "step" is an integer <= step, or that have none. Lines that are not JSON
// objects (a row cut by a crash, an edit) are dropped; each kept line ends with "\n". `kept`
// receives the number of rows kept.
std::string metrics_kept_on_resume(std::string_view jsonl, int64_t step, int64_t rows, int64_t* kept = nullptr);

struct Progress {
    int64_t epoch = 0, epochs = 0; // 1-based epoch being run, of `epochs`
    int64_t step = 0, total = 0;   // steps done, of `total` (0: unknown, no bar)
    double loss = NAN;             // NaN: not shown
    double accuracy = NAN;         // fraction in [0, 1]; NaN: not shown
    double tokens_per_s = NAN;     // NaN: not shown
    double eta_s = NAN;            // NaN/inf: shown as --
};

// The progress line without newline or carriage return (pure: for tests and for the bar).
std::string format_progress(const Progress& p, int bar_width = 20);
// "12", "950", "12.3k", "4.56M"
std::string format_si(double v);
// "0:09", "12:03", "1:02:03"; "--" for NaN, inf or negative
std::string format_duration(double seconds);

// On a terminal: the line is redrawn in place ("\r" + line + clear-to-end) at most every
// tty_interval_s. Otherwise (a log file, a pipe): a plain line per plain_interval_s. The first
// update is always shown; finish() shows the last state and ends the line.
class ProgressBar {
public:
    explicit ProgressBar(std::FILE* out, double tty_interval_s = 0.1, double plain_interval_s = 30.0);
    ~ProgressBar();
    void update(const Progress& p);
    void finish();
    bool is_tty() const { return tty_; }

private:
    void draw(const Progress& p);
    std::FILE* out_;
    bool tty_;
    double interval_s_;
    bool shown_ = false, open_line_ = false, pending_ = false;
    Progress last_;
    std::chrono::steady_clock::time_point last_draw_;
};

} // namespace mg::train
