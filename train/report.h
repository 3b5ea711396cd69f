// train/report.h: an experiment's results as markdown, from its result rows alone
// (`mambagrad report`; docs/RESULTS.md is this over every experiments/*.json).
//
// For each experiment (train/sweep.h's file and its results/<name>.jsonl):
//   a heading and the file's description;
//   the summary table: one line per group of runs that differ only in their "seed" axis, with
//     each test variant's query accuracy (%) as mean ± sample standard deviation over the seeds
//     (the seed count in its own column; an LM run shows held-out bits per byte instead), and the
//     paper's numbers beside them when the file's "paper" has the group: "paper": {"<group id>":
//     {"<variant>": number}}, the group id being the run id without its seed
//     ("model=mamba,train_on=standard");
//   per group and test variant, the accuracy of every (L, N) cell (mean over seeds), L down and
//     N across, with "·" where the grid has no cell;
//   each such cell table also as a heatmap image, results/<experiment>__<group>__<variant>.png,
//     and the runs' validation curves (rows written since 2026-12-07 carry them as "curve") as
//     results/<experiment>__curves.png; the markdown links them (relative to docs/RESULTS.md) and
//     the images are drawn (train/plot.h, cairo) into `image_dir` when it is given;
//   where the rows came from: their count, devices, commits and dates.
// Nothing in it is typed by hand: a test regenerates docs/RESULTS.md and compares.
#pragma once
#include <string>
#include <vector>

#include "train/sweep.h"

namespace mg::train {

// The markdown of one experiment, from `rows` (read_result_rows of its results file; rows of
// other experiments or without "status" "ok" are ignored).
// Images are drawn into image_dir when it is not empty (the markdown is the same either way).
std::string experiment_report(const SweepSpec& spec, const std::vector<nlohmann::ordered_json>& rows,
                              const std::string& image_dir = "");

// The whole document over experiment files (each with its results file beside it, in
// results/<name>.jsonl): a title, a line saying how it was made, then experiment_report of each.
std::string results_document(const std::vector<std::string>& experiment_files, const std::string& results_dir = "",
                             const std::string& image_dir = "");

} // namespace mg::train
