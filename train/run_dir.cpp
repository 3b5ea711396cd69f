// train/run_dir.cpp: see train/run_dir.h.
#include "train/run_dir.h"

#include <algorithm>
#include <filesystem>

#include "data/atomic_file.h"
#include "data/read_file.h"
#include "tensor/check.h"
#include "tensor/json.h"
#include "train/metrics.h"

namespace mg::train {

RunDir open_run_dir(const std::string& run_dir, const nlohmann::json& config, bool resuming, int64_t resume_step,
                    int64_t resume_rows) {
    const std::filesystem::path p = std::filesystem::path(run_dir).lexically_normal();
    const std::string name = p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
    const std::string root = p.filename().empty() ? p.parent_path().parent_path().string() : p.parent_path().string();
    // one run per directory: lock it before anything in it is written or removed
    const std::filesystem::path dir = std::filesystem::path(root.empty() ? "." : root) / name;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    MG_CHECK(!ec, "run directory: cannot create '{}': {}", dir.string(), ec.message());
    RunDir out;
    out.lock = data::DirLock(dir.string(), "train: run directory");
    out.path = make_run_dir(root.empty() ? "." : root, name, config);
    // leftovers of writes a kill cut short, and (resuming) the run's checkpoints so far, which
    // keep_checkpoints counts with the ones this Trainer writes
    const std::filesystem::path ckpt_dir = std::filesystem::path(out.path) / "checkpoints";
    // what the run will write, checked now and not after an hour of training: the checkpoint
    // folder exists and takes files, and the final checkpoint's name is free for a file
    std::filesystem::create_directories(ckpt_dir, ec);
    MG_CHECK(!ec && std::filesystem::is_directory(ckpt_dir), "train: cannot use '{}' for checkpoints: {}",
             ckpt_dir.string(), ec ? ec.message() : std::string("it exists and is not a directory"));
    data::write_file_atomic((ckpt_dir / ".write_check").string(), "");
    std::filesystem::remove(ckpt_dir / ".write_check");
    for (const char* file : {"final.safetensors", "metrics.jsonl"}) {
        const std::filesystem::path f = std::filesystem::path(out.path) / file;
        MG_CHECK(!std::filesystem::exists(f) || std::filesystem::is_regular_file(f),
                 "train: '{}' exists and is not a file; the run writes it", f.string());
    }
    data::remove_stale_temp_files(out.path);
    data::remove_stale_temp_files(ckpt_dir.string());
    if (resuming && std::filesystem::is_directory(ckpt_dir))
        for (const auto& e : std::filesystem::directory_iterator(ckpt_dir)) {
            const std::string f = e.path().filename().string();
            if (f.starts_with("step_") && f.ends_with(".safetensors")) out.checkpoints.push_back(e.path().string());
        }
    std::sort(out.checkpoints.begin(), out.checkpoints.end()); // step_<7 digits>: by step
    out.metrics = (std::filesystem::path(out.path) / "metrics.jsonl").string();
    const std::string& metrics = out.metrics;
    if (!resuming) {
        std::filesystem::remove(metrics); // a fresh run starts a fresh log
    } else if (std::filesystem::exists(metrics)) {
        // keep the rows up to the checkpoint's step: an interrupted run may have logged past it
        const std::string log = data::read_regular_file(metrics, "train --resume: the run's metrics log", uint64_t(1) << 32);
        data::write_file_atomic(metrics, metrics_kept_on_resume(log, resume_step, resume_rows, &out.metrics_rows));
    }
    return out;
}

} // namespace mg::train
