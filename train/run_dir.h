// train/run_dir.h: a training run's directory, taken for one run before anything in it is written:
// the lock (one run per directory), config.json, the checks of what the run will write (the
// checkpoint folder takes files; final.safetensors and metrics.jsonl are free for files), the
// temp files of dead writers removed, and (resuming) the checkpoints already there and the log
// cut back to the resumed step.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "data/dir_lock.h"

namespace mg::train {

struct RunDir {
    std::string path;                     // the run directory
    data::DirLock lock;                   // held for the run's lifetime
    std::vector<std::string> checkpoints; // step_*.safetensors already there (resuming), oldest first
    std::string metrics;                  // metrics.jsonl: removed (fresh) or cut back to the checkpoint
    int64_t metrics_rows = 0;             // the rows it holds now
};

// `run_dir` as the config gives it; `config` is written to config.json. Resuming, metrics.jsonl
// keeps what metrics_kept_on_resume(log, resume_step, resume_rows) keeps (the checkpoint's
// TrainerState::step and metrics_rows). Throws mg::Error naming the directory or file that cannot
// be used, or the process holding the directory.
RunDir open_run_dir(const std::string& run_dir, const nlohmann::json& config, bool resuming, int64_t resume_step,
                    int64_t resume_rows);

} // namespace mg::train
