// train/config.h: a training run's config: one typed TrainConfig read from JSON (a file, flags,
// a checkpoint), validated once, with errors that name the dotted key.
//
// ---- The config (JSON; every key optional, defaults below; unknown keys are errors) -----------
//   {"model":  {...nn/config.h's MambaConfig JSON..., "vocab_size": "auto" | int}
//          or {"arch": "transformer", ...nn/transformer.h's TransformerConfig JSON..., "vocab_size": ...},
//    "task":   {"kind": "mqar",
//               "variant": "standard", "grid": [[16, 2], [32, 2]] | "64x4,128x8" | "zoology" | "paper",
//               "train_examples": 16384, "valid_examples": 100, "test_examples": 100,   (per cell)
//               "vocab_size": 32, "noise": true, "binding": "pair" | "first",
//               "seed": null | int, "test_variants": ["standard", "last", "shuffle"]}
//          or {"kind": "lm", "corpus": "data/corpus/kjv.txt", "seq_len": 256, "tokenizer": "",
//              "valid_fraction": 0.05, "test_fraction": 0.05, "eval_batches": 0},
//    "seed": 0, "batch_size": 32, "grad_accum_steps": 1, "epochs": 2, "max_steps": 0, "shuffle": true,
//    "lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-6, "weight_decay": 0.1,
//    "no_decay": "none" | "mamba_ssm", "lr_scale": {} | {"long_conv": 0.1}, "adamw": "transformers" | "torch",
//    "schedule": "cosine" | "constant", "warmup_fraction": 0.1, "min_lr": 0,
//    "clip_value": 1.0, "clip_norm": 0, "nan_guard": true, "log_grad_norms": false,
//    "eval_every": 256, "target_accuracy": 0.99, "log_every": 10,
//    "device": "auto" | "cpu" | "cuda" | "cuda:N", "precision": "fp32" | "tf32", "run_dir": "runs/mqar-standard",
//    "checkpoint_every": 0, "keep_checkpoints": 2, "resume": "", "init": ""}
// model.vocab_size "auto" is the smallest vocabulary that holds every token id of the training
// variant and the test variants (data::mqar_model_vocab). task.seed null uses the paper's seeds
// per split (train 42, valid 1234, test 4567, + the cell's index); an integer s uses s, s + 10^6
// and s + 2 10^6. "seed" (top level) seeds the model's initialisation and the batch order.
// max_steps > 0 replaces epochs (the run stops after that many optimizer steps, over as many
// epochs as that takes); clip_value / clip_norm / target_accuracy / eval_every /
// checkpoint_every are off at 0. eval_every 0 evaluates at the end of every epoch.
// run_dir "" writes nothing (no config.json, metrics or checkpoints).
// init: a checkpoint file or a model folder (train/pretrained.h) whose parameters start the run
// (fine-tuning: a fresh optimizer, step 0; its shapes must be the config's). `train --init X`
// without --config takes X's config (model, task; run_dir runs/finetune) as --resume does. A
// resumed run ignores init (its checkpoint holds the fine-tuned weights already).
// lr_scale: learning-rate multipliers by parameter-name component (AdamWOptions::lr_scale).
// Errors name the key (dotted: "task.grid") and the allowed values or type.
//
// ---- Language modelling (task.kind "lm", SPEC §4 "LM") -----------------------------------------
// Next-token prediction on a plain-text corpus through task.tokenizer ("": bytes; else a
// tokenizer.json, data/tokenizer.h; model.vocab_size "auto" is then its vocabulary) (data/text.h: tokens, the contiguous
// train/valid/test split by valid_fraction / test_fraction, windows). The task keys are then
// only kind, corpus, seq_len, valid_fraction, test_fraction and eval_batches (an MQAR key is an
// unknown key); model.vocab_size "auto" is data::kTextVocab (258, padded to 264). A step draws
// batch_size windows of seq_len + 1 tokens from the train split, a pure function of (seed,
// step) (data::sample_text_batch; with grad_accum_steps k, k draws per step); an "epoch" is
// floor(train tokens / (batch_size k seq_len))
// steps (shuffle has no effect). The loss is the same cross_entropy_indexed call as MQAR's with
// every position labelled: the mean over all B*L positions. Evaluation (evaluate_lm) tiles the
// valid split with stride-seq_len windows (each byte a target once), the first eval_batches
// batches of them (0: all), and reports loss (nats/byte), bits per byte and perplexity;
// target_accuracy (early stop) applies to MQAR only.
//
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "data/mqar.h"
#include "data/text.h"
#include "nn/config.h"
#include "nn/transformer.h"
#include "tensor/device.h"
#include "train/optim.h"
#include "train/schedule.h"

namespace mg::train {

enum class TaskKind { Mqar, Lm };

struct TaskConfig {
    TaskKind kind = TaskKind::Mqar;
    // ---- kind mqar
    data::MqarVariant variant = data::MqarVariant::Standard;
    std::vector<data::GridCell> grid = {{16, 2}, {32, 2}};
    int64_t train_examples = 16384, valid_examples = 100, test_examples = 100; // per (L, N) cell
    int64_t vocab_size = 32; // the paper's VOCAB_SIZE W (keys and values split it): data/mqar.h
    bool noise = true;
    data::KeyBinding binding = data::KeyBinding::Pair;
    std::optional<uint64_t> seed;
    std::vector<data::MqarVariant> test_variants = {data::MqarVariant::Standard, data::MqarVariant::Last,
                                                    data::MqarVariant::Shuffle};
    // ---- kind lm (data/text.h)
    std::string corpus = "data/corpus/kjv.txt";
    int64_t seq_len = 256;
    double valid_fraction = 0.05, test_fraction = 0.05;
    int64_t eval_batches = 0; // batches of the held-out split per evaluation; 0: all of it
    std::string tokenizer;    // "": bytes; else a tokenizer.json (data/tokenizer.h)
    int64_t tokenizer_vocab = 0; // its vocab_size (read with the config; 0 for bytes)

    // The data of one variant and split over the grid (cells the variant cannot hold are skipped).
    data::MqarGridData generate(data::MqarVariant v, data::Split split, int64_t examples_per_cell) const;
    // The largest data::mqar_model_vocab over the training and test variants; kTextVocab for lm.
    int64_t model_vocab() const;
    bool is_lm() const { return kind == TaskKind::Lm; }
};

// model.arch: which model the run trains. "mamba" (the default, and every config or checkpoint
// written before the key existed) reads the model section as a MambaConfig into `model`;
// "transformer" reads it as a TransformerConfig into `transformer` (the same presets' names where
// they exist: "zoology"), and `model` is unused.
enum class ModelArch { mamba, transformer };

struct TrainConfig {
    ModelArch arch = ModelArch::mamba;
    nn::MambaConfig model = nn::MambaConfig::preset("zoology", 64);
    nn::TransformerConfig transformer = nn::TransformerConfig::preset("zoology", 64);
    TaskConfig task;
    uint64_t seed = 0;
    int64_t batch_size = 32;      // examples per forward/backward (micro-batch)
    int64_t grad_accum_steps = 1; // micro-batches per optimizer step (see "The loop")
    int64_t epochs = 2, max_steps = 0;
    bool shuffle = true;
    double lr = 1e-2, beta1 = 0.9, beta2 = 0.95, eps = 1e-6, weight_decay = 0.1;
    std::string no_decay = "none"; // "none" | "mamba_ssm"
    // Learning-rate multipliers by parameter name: {"long_conv": 0.1} scales every parameter whose
    // dotted name holds the component "long_conv" (several matching keys multiply). Empty: none.
    std::map<std::string, double> lr_scale;
    // The multiplier of one parameter (1 when no key matches).
    double lr_scale_of(const std::string& param) const;
    AdamWStyle adamw = AdamWStyle::Transformers;
    ScheduleKind schedule = ScheduleKind::Cosine;
    double warmup_fraction = 0.1, min_lr = 0;
    double clip_value = 1.0, clip_norm = 0;
    bool nan_guard = true;
    bool log_grad_norms = false; // every parameter's gradient norm in each train row of metrics.jsonl
    int64_t eval_every = 256, log_every = 10;
    double target_accuracy = 0.99;
    std::string device = "auto";
    // How f32 matmuls run on the GPU (ops/matmul.h MatmulPrecision): "fp32" (the reference) or
    // "tf32" (tensor cores, fp32 accumulation; every other op stays fp32). CUDA only.
    std::string precision = "fp32";
    std::string run_dir = "runs/mqar-standard";
    int64_t checkpoint_every = 0, keep_checkpoints = 2;
    std::string resume;
    std::string init; // a checkpoint or model folder whose parameters start the run (fine-tuning)

    // The config as JSON with every key (the model fully resolved, no preset): what config.json
    // and checkpoints store; from_json(to_json()) gives the same config.
    nlohmann::ordered_json to_json() const;
    // Throws mg::Error "train config: <dotted key> ..." naming the key and what is allowed.
    static TrainConfig from_json(const nlohmann::json& j);
    void validate() const;
    Device resolved_device() const; // "auto": cuda when a CUDA device is visible, else cpu
    bool is_transformer() const { return arch == ModelArch::transformer; }
    int64_t model_vocab_size() const { return is_transformer() ? transformer.vocab_size : model.vocab_size; }
};

// Sets the dotted key (e.g. "task.grid", "model.d_model", "lr") of `config` to `value`, read as
// JSON when it parses as JSON (numbers, true/false/null, arrays, objects, "quoted strings") and
// as a plain string otherwise. Intermediate objects are created; an unknown key is caught later
// by TrainConfig::from_json.
void apply_override(nlohmann::json& config, const std::string& key, const std::string& value);
// The same with a JSON value (what apply_override and the sweep runner's overrides set).
void set_config_key(nlohmann::json& config, const std::string& key, nlohmann::json value);

// The default model section: {"preset": "zoology", "d_model": 64, "vocab_size": "auto"}.
nlohmann::json default_model_json();

// The metadata key holding the run's config in checkpoints (train/checkpoint.h's layout).
inline constexpr const char* kCheckpointConfigKey = "mambagrad.config";


// The config JSON stored in a checkpoint (throws when it has none, or when it is not JSON).
// Configs written before model.global_selection.gate existed get "gate": "silu" (what they ran).
nlohmann::json checkpoint_config(const std::string& checkpoint);
// The same from a checkpoint's metadata (`checkpoint` names the file in errors).
nlohmann::json checkpoint_config(const std::map<std::string, std::string>& metadata, const std::string& checkpoint);
// A config's task.kind, "mqar" when absent; for JSON not yet read by TrainConfig::from_json (a
// checkpoint's config): a task that is not an object or a kind that is not a string is an
// mg::Error naming the key, as from_json would give.
std::string task_kind(const nlohmann::json& config);


// Parses `mambagrad train` arguments after the subcommand: --config FILE, --key value,
// --key=value (dotted keys, see apply_override). Without --config the defaults are used, or the
// checkpoint's config when --resume is given. --task.kind that changes the kind starts the task
// section afresh (and the default run_dir becomes runs/lm). Throws mg::Error on a bad argument.
TrainConfig parse_train_args(const std::vector<std::string>& args);

} // namespace mg::train
