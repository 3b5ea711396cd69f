// train/sweep.h: experiments as grids of training runs (`mambagrad sweep`), and their result rows.
//
// ---- An experiment file (experiments/<name>.json) ----------------------------------------------
//   {"name": "positional",                        the results go to experiments/results/<name>.jsonl
//    "description": "...",
//    "base": {...a train config (train/config.h)...},
//    "axes": [                                    the runs are the product of the axes, in order
//      {"name": "model", "values": {"mamba": {}, "gs128": {"model.global_selection": {"enabled": true}}}},
//      {"name": "train_on", "values": {"standard": {"task.variant": "standard"}, "last": {...}}},
//      {"name": "seed", "values": [0, 1]}],       a list: the axis name is the config key it sets
//    "jobs": 3,                                   runs at once (default 1; --jobs overrides)
//    "paper": {...}}                              the paper's numbers, for `mambagrad report` only
// An object axis maps a label ([A-Za-z0-9._-]+) to dotted config keys and their JSON values
// (train/config.h's set_config_key), applied over "base" in axis order. A run's id names its
// labels, "model=mamba,train_on=standard,seed=0", and its run directory is
// <runs_root>/<name>/<id> (runs_root: runs/sweeps). Every run's config is checked
// (TrainConfig::from_json) before the first starts.
//
// ---- Running (run_sweep) -----------------------------------------------------------------------
// Each run is a child process, `mambagrad train --config <run_dir>.json` (or `train --resume
// <newest checkpoint>` when its run directory holds checkpoints from an interrupted sitting), up
// to `jobs` at once. A run that ends with exit status 0 appends one result row (result_row) to the
// results file; a run already recorded there (its id with "status" "ok") is skipped, so a sweep
// spreads over sittings and a killed sweep loses at most its runs in flight (and not even those
// when their configs checkpoint). A run that fails is reported with the end of its log and
// tried again next time. Ctrl-C or SIGTERM passes the signal to the runs in flight (each writes
// a checkpoint) and ends the sweep; a second signal ends them at once.
//
// ---- A result row (one JSON object per line) ---------------------------------------------------
//   {"experiment", "run" (the id), "labels": {axis: label}, "status": "ok",
//    "test": {variant: {"query_acc", "token_acc", "loss", "subtasks": [{"L","N","query_acc","token_acc"}]}},
//    "valid": the last evaluation's score (the same fields), "train_loss": the last logged train loss,
//    "steps", "epochs", "wall_s" (this sitting's), "resumed" (whether it went on from a checkpoint),
//    "device", "commit" (the build's), "date" (UTC), "config" (the run's whole config)}
// (an LM run's "test" and "valid" hold "loss", "bpb", "perplexity").
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mg::train {

struct SweepAxis {
    std::string name;
    // label -> the config keys it sets (a JSON object of dotted key: value)
    std::vector<std::pair<std::string, nlohmann::ordered_json>> values;
};

struct SweepSpec {
    std::string name, description, path;
    nlohmann::ordered_json base;  // a train config
    std::vector<SweepAxis> axes;
    int64_t jobs = 1;
    nlohmann::ordered_json paper; // null when absent
    // Reads and checks an experiment file; errors name the file and the key.
    static SweepSpec load(const std::string& path);
    static SweepSpec from_json(const nlohmann::ordered_json& j, const std::string& where);
};

struct SweepRun {
    std::string id;                                        // "model=mamba,train_on=standard,seed=0"
    std::vector<std::pair<std::string, std::string>> labels; // (axis, label) in axis order
    nlohmann::ordered_json config;                         // base + the labels' keys + run_dir
    std::string run_dir;
};
// Every run of the grid, in axis order (the last axis varies fastest), each config checked.
std::vector<SweepRun> expand_sweep(const SweepSpec& spec, const std::string& runs_root = "runs/sweeps");

// The results file of an experiment: experiments/results/<name>.jsonl beside the experiment
// file's folder's "results" (results_dir overrides).
std::string sweep_results_path(const SweepSpec& spec, const std::string& results_dir = "");
// The runs recorded in a results file: each id with a row of "status" "ok", and the config that
// row ran (none when the file does not exist).
std::map<std::string, nlohmann::ordered_json> recorded_runs(const std::string& results_path);
// The rows of a results file (lines that are not JSON objects are skipped and counted).
std::vector<nlohmann::ordered_json> read_result_rows(const std::string& results_path, int64_t* skipped = nullptr);

// A finished run's result row, from its run directory's metrics.jsonl (see above).
nlohmann::ordered_json result_row(const SweepSpec& spec, const SweepRun& run, double wall_s, bool resumed);
// Appends one row (one line, written with O_APPEND and fsync'd: a crash leaves whole rows).
void append_result_row(const std::string& results_path, const nlohmann::ordered_json& row);

// The newest step_*.safetensors in <run_dir>/checkpoints, or "" when there is none.
std::string newest_checkpoint(const std::string& run_dir);

struct SweepOptions {
    int64_t jobs = 0;             // 0: the spec's
    bool dry_run = false;         // list the runs and what would happen to each, run nothing
    std::string runs_root = "runs/sweeps";
    std::string results_dir;      // "" : sweep_results_path's default
    std::string program;          // the mambagrad binary to run (default: this process's)
    double status_every_s = 30;   // a status line this often when not on a terminal
};
struct SweepSummary {
    int64_t total = 0, skipped = 0, done = 0, failed = 0;
    bool interrupted = false;
};
// Runs what is left of the sweep (see above), printing a live table to `out`.
SweepSummary run_sweep(const SweepSpec& spec, const SweepOptions& options, std::FILE* out);

// The status line: "sweep positional: 4 done, 2 running (...), 6 left | ETA 1:23:45".
struct SweepStatus {
    int64_t done = 0, failed = 0, left = 0;
    std::vector<std::pair<std::string, int64_t>> running; // (id, its last logged step)
    double eta_s = -1;                                     // < 0: unknown
};
std::string format_sweep_status(const std::string& name, const SweepStatus& s);

} // namespace mg::train
