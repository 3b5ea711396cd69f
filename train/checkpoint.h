// train/checkpoint.h: safetensors files, and checkpoints built on them (DESIGN "Files and runs").
//
// ---- The safetensors format (huggingface/safetensors) ------------------------------------------
//   bytes 0..8     N, the header length, unsigned 64-bit little-endian
//   bytes 8..8+N   a UTF-8 JSON object (we pad it with trailing spaces to a multiple of 8 bytes
//                  so tensor data is 8-byte aligned):
//                    {"__metadata__": {"key": "value", ...},         (optional; strings only)
//                     "<name>": {"dtype": "F32" | "F64" | "I32" | "BF16" | "F16",
//                                "shape": [d0, d1, ...],             ([] for a scalar)
//                                "data_offsets": [begin, end]},      (bytes, from the data start)
//                     ...}
//   bytes 8+N..    the data section: each tensor's elements, row-major, little-endian
// BF16 and F16 tensors (many published checkpoints) are read into f32 (exactly: every bf16 and f16
// value is a float), unless the caller of load_safetensors asks for HalfRead::keep_bf16: then BF16
// tensors come back as DType::bf16 tensors holding the file's bits. mambagrad writes F32, F64, I32
// and BF16 (a DType::bf16 tensor); checkpoints and model folders hold and read f32.
// The reader enforces what the reference implementation enforces: known dtype, end - begin ==
// numel * element size, ranges inside the data section, no overlaps, no holes, and the data
// section ends exactly at the last range (so a truncated file is always caught).
//
// ---- Checkpoints ---------------------------------------------------------------------------------
// One safetensors file holds
//   <name>                             every model parameter under its own (mamba_ssm/HF) name
//   optimizer.exp_avg.<name>           AdamW state (when an optimizer is given)
//   optimizer.exp_avg_sq.<name>
// and in __metadata__:
//   "format": "pt"                     (so transformers / safetensors.torch accept the file)
//   "mambagrad.config"                 the run's config JSON, verbatim
//   "mambagrad.trainer"                JSON: {"epoch", "step", "cursor", "rng_seed", "rng_offset"}
//   "mambagrad.optimizer"              AdamW::state_json(): hyper-parameters and step counts
// Files are written atomically (temp file in the same directory, fsync, rename): a crash leaves
// the previous checkpoint or the new one, never a partial file.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tensor/tensor.h"
#include "train/grad_monitor.h"
#include "train/optim.h"

namespace mg::train {

using Metadata = std::map<std::string, std::string>;

// Tensors (any device, any strides) are copied to the host and written in the given order.
// Names must be unique and non-empty and not "__metadata__". Throws mg::Error naming the file.
// The metadata gets kChecksumKey: a checksum of the tensor bytes (data_checksum), which
// load_safetensors verifies, so a flipped byte is caught rather than scored. Other safetensors
// readers ignore it.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});

inline constexpr const char* kChecksumKey = "mambagrad.checksum";
// "mg64:<16 hex digits>": each 8-byte little-endian word w of the bytes (the tail zero-padded)
// updates h = (h ^ w) * 0x100000001b3 then h ^= h >> 29, from h = 0xcbf29ce484222325, and the
// byte count is mixed in last. Not cryptographic: it catches damage, not tampering.
std::string data_checksum(const std::vector<std::pair<const void*, size_t>>& pieces);

struct SafetensorsFile {
    NamedTensors tensors; // in data-offset order
    Metadata metadata;
    std::map<std::string, Tensor> by_name() const;
};
// Reads and validates a file; tensors are placed on `device`. Errors name the file and, where
// one is at fault, the tensor. BF16 tensors become f32 (the default, what checkpoints and model
// folders use) or, with keep_bf16, bf16; F16 always becomes f32.
enum class HalfRead { to_f32, keep_bf16 };
SafetensorsFile load_safetensors(const std::string& path, Device device = Device::cpu(),
                                 HalfRead bf16_as = HalfRead::to_f32);

// The header alone (every check load_safetensors makes except reading the data): what
// `mambagrad info` and checkpoint_config read without loading gigabytes of tensors.
struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::f32; // the tensor's dtype once read (BF16, F16: f32 unless HalfRead::keep_bf16)
    std::string stored = "F32"; // the file's dtype string; its element size is stored_size()
    size_t stored_size() const { return stored == "BF16" || stored == "F16" ? 2 : dtype_size(dtype); }
    Shape shape;
    uint64_t begin = 0, end = 0; // byte range in the data section
};
struct SafetensorsHeader {
    std::vector<SafetensorsEntry> entries; // in data-offset order
    Metadata metadata;
    uint64_t data_start = 0; // file offset of the data section (8 + header length)
};
SafetensorsHeader read_safetensors_header(const std::string& path);

// Where the trainer stands, for exact resume.
struct TrainerState {
    int64_t epoch = 0;  // epochs completed
    int64_t step = 0;   // optimizer steps taken (the schedule's step)
    int64_t cursor = 0; // batches of the current epoch already consumed
    uint64_t rng_seed = 0, rng_offset = 0; // Generator::seed(), Generator::offset()
    // The log's running state, so that a resumed run writes the uninterrupted run's metrics: the
    // losses summed since the last train row and their count, and the gradient-norm monitor's
    // memory (train/grad_monitor.h). Absent in older checkpoints: zero and empty.
    double log_loss_sum = 0;
    int64_t log_steps = 0;
    GradNormMonitor::Memory monitor;
    // The rows metrics.jsonl held when the checkpoint was taken (a resume keeps exactly those:
    // rows of the same step can follow a checkpoint, such as an end-of-epoch or final
    // evaluation), and the step of the last evaluation (so a resumed run does not repeat it).
    // -1: unknown (older checkpoints); a resume then keeps the rows up to the checkpoint's step.
    int64_t metrics_rows = -1;
    int64_t last_eval_step = -1;
    bool operator==(const TrainerState&) const = default;
};

// Writes params (and optimizer state when `optimizer` is non-null) with the trainer state and
// config. `extra` adds metadata entries (names must not clash with the ones above).
void save_checkpoint(const std::string& path, const NamedTensors& params, const AdamW* optimizer,
                     const TrainerState& state, const std::string& config_json, const Metadata& extra = {});

// The "mambagrad.trainer" metadata entry (a default TrainerState when absent); `path` names the
// file in the error when the entry is malformed.
TrainerState read_trainer_state(const Metadata& metadata, const std::string& path);

// Throws naming the file, the tensor and the first index when a floating tensor holds NaN or Inf.
void require_finite(const std::string& path, const NamedTensors& tensors);
// Reads the file's data (verifying its checksum) and requires it finite: what load_checkpoint
// checks of the data, without a model to load it into.
void check_checkpoint_data(const std::string& path);

struct LoadedCheckpoint {
    TrainerState state;
    std::string config_json; // "" when the file has none
    Metadata metadata;       // everything in __metadata__
};
// Copies the file's tensors into `params` (every name must be present with the same shape;
// float dtypes are converted) and, when `optimizer` is non-null, restores its state. Tensors in
// the file that match nothing are an error unless allow_unexpected. Nothing is changed unless
// every check passes.
LoadedCheckpoint load_checkpoint(const std::string& path, const NamedTensors& params, AdamW* optimizer,
                                 bool allow_unexpected = false);

} // namespace mg::train
