// train/info.h: what `mambagrad info` prints for a model: the parameter table (mamba_ssm names,
// shapes, counts, dtypes), the totals (with and without global selection; the LM head tied to the
// embedding, so counted once), the bytes in fp32 and the model config.
//
// A model given by a config is never built (nn::parameter_specs lists its parameters from the
// shapes: mamba-130m's 0.5 GB would take seconds to initialise); a checkpoint is read through its
// header only (train/checkpoint.h), and every parameter its config implies must be in the file
// with that shape.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nn/config.h"
#include "tensor/dtype.h"
#include "tensor/shape.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace mg::train {

struct ModelInfo {
    struct Row {
        std::string name;
        Shape shape;
        int64_t count = 0;
        DType dtype = DType::f32;
        std::string stored;    // the file's dtype when it is not dtype's ("bf16", "f16": read as f32)
        size_t stored_size = 0; // its element size in bytes (0: dtype's)
        std::string dtype_text() const { return stored.empty() ? std::string(dtype_name(dtype)) : stored; }
    };
    std::string source; // "config" or the checkpoint's path
    TrainConfig config;                   // model.arch picks config.model or config.transformer
    std::vector<Row> parameters;          // in named_parameters() order
    int64_t total = 0;                    // the sum over `parameters`
    int64_t without_global_selection = 0; // the same config with global selection off
    int64_t embedding = 0;                // the input embedding (Mamba: = the tied lm_head)
    std::optional<TrainerState> state;    // a checkpoint's position
    int64_t optimizer_tensors = 0;        // a checkpoint's "optimizer.*" entries

    int64_t bytes_fp32() const { return total * 4; }
    int64_t bytes_stored() const; // sum of count * the row's dtype size
};

// The model the trainer builds from cfg: every parameter f32.
ModelInfo model_info(const TrainConfig& cfg);
// The checkpoint's model (its "mambagrad.config" metadata), dtypes as stored, with the trainer
// state and the number of optimizer tensors. Throws mg::Error naming the file and the parameter
// when the file does not hold its config's parameters.
ModelInfo model_info_from_checkpoint(const std::string& path);

// The human-readable report: config summary, table, totals (numbers with thousands separators).
std::string format_model_info(const ModelInfo& info);
// The same as JSON: {"source", "config", "parameters": [{"name", "shape", "count", "dtype"}],
// "total", "total_without_global_selection", "global_selection", "embedding", "tied_embeddings",
// "bytes_fp32", "bytes_stored", and for checkpoints "checkpoint": {"step", "epoch", "cursor",
// "optimizer_tensors"}}.
nlohmann::ordered_json model_info_json(const ModelInfo& info);

// 129135360 -> "129,135,360"
std::string group_thousands(int64_t v);

} // namespace mg::train
