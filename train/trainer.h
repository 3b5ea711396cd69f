// train/trainer.h: training a MambaLM on MQAR or byte-level language modelling (SPEC §4-§5): the
// run's config, the loop, evaluation and exact resume.
//
// ---- The config (JSON; every key optional, defaults below; unknown keys are errors) -----------
//   {"model":  {...nn/config.h's MambaConfig JSON..., "vocab_size": "auto" | int},
//    "task":   {"kind": "mqar",
//               "variant": "standard", "grid": [[16, 2], [32, 2]] | "64x4,128x8" | "zoology" | "paper",
//               "train_examples": 16384, "valid_examples": 100, "test_examples": 100,   (per cell)
//               "vocab_size": 32, "noise": true, "binding": "pair" | "first",
//               "seed": null | int, "test_variants": ["standard", "last", "shuffle"]}
//          or {"kind": "lm", "corpus": "data/corpus/kjv.txt", "seq_len": 256,
//              "valid_fraction": 0.05, "test_fraction": 0.05, "eval_batches": 0},
//    "seed": 0, "batch_size": 32, "grad_accum_steps": 1, "epochs": 2, "max_steps": 0, "shuffle": true,
//    "lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-6, "weight_decay": 0.1,
//    "no_decay": "none" | "mamba_ssm", "adamw": "transformers" | "torch",
//    "schedule": "cosine" | "constant", "warmup_fraction": 0.1, "min_lr": 0,
//    "clip_value": 1.0, "clip_norm": 0, "nan_guard": true, "log_grad_norms": false,
//    "eval_every": 256, "target_accuracy": 0.99, "log_every": 10,
//    "device": "auto" | "cpu" | "cuda" | "cuda:N", "run_dir": "runs/mqar-standard",
//    "checkpoint_every": 0, "keep_checkpoints": 2, "resume": ""}
// model.vocab_size "auto" is the smallest vocabulary that holds every token id of the training
// variant and the test variants (data::mqar_model_vocab). task.seed null uses the paper's seeds
// per split (train 42, valid 1234, test 4567, + the cell's index); an integer s uses s, s + 10^6
// and s + 2 10^6. "seed" (top level) seeds the model's initialisation and the batch order.
// max_steps > 0 replaces epochs (the run stops after that many optimizer steps, over as many
// epochs as that takes); clip_value / clip_norm / target_accuracy / eval_every /
// checkpoint_every are off at 0. eval_every 0 evaluates at the end of every epoch.
// run_dir "" writes nothing (no config.json, metrics or checkpoints).
// Errors name the key (dotted: "task.grid") and the allowed values or type.
//
// ---- Language modelling (task.kind "lm", SPEC §4 "LM") -----------------------------------------
// Byte-level next-token prediction on a plain-text corpus (data/text.h: tokens, the contiguous
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
// ---- The loop ---------------------------------------------------------------------------------
// Data: task.train_examples per (L, N) cell of the grid (data::generate_mqar_grid, split train),
// cut into length-uniform batches of batch_size * grad_accum_steps examples, one per optimizer
// step; with shuffle, epoch e's order is a pure function of (seed, e): the examples of each length
// are permuted, cut into batches, and the batches permuted (without shuffle: data::batch_plan's
// longest-first order, the paper's). So (epoch, cursor = batches consumed in the epoch, i.e.
// optimizer steps taken in it) locates the data exactly, whatever grad_accum_steps is.
// Gradient accumulation: a step's batch is run as micro-batches of batch_size (a length group's
// last step may have fewer, and a smaller last one), one forward/backward each, the gradients
// adding up in .grad.
// Micro-batch j's mean cross-entropy is weighted by P_j / P, its share of the step's labelled
// positions, so the step's loss and gradient are those of the mean over ALL the step's labelled
// positions: exactly one batch of batch_size * grad_accum_steps (up to float rounding), not the
// mean of the micro-batch means (which differ when the micro-batches have unequal sizes).
// A step: per micro-batch, hidden = model.hidden_states(inputs) (B, L, d); loss =
// cross_entropy_indexed(hidden, lm_head weight, labelled positions, targets), i.e. the mean
// cross-entropy over the labelled positions only, logits built just there (labels are already
// shifted: data/mqar.h), weighted as above; backward. Then, on the accumulated gradient: NaN/Inf
// guard on the loss and every gradient (the message names the step); clip by value, then by global
// norm; AdamW at lr = schedule(step) (warmup fraction, then cosine to min_lr). Steps, the schedule,
// log_every, eval_every and checkpoint_every all count optimizer steps.
// On CUDA a step queues without waiting for the GPU: its loss and the guard's findings are read
// one step later (train/guard.h), and AdamW skips a non-finite step on the device, so the error
// still names the right step and the parameters never see it; clip_norm > 0 reads the norm back
// and so waits every step. Everything is settled before a log line, an evaluation or a checkpoint.
// Every log_every steps a metrics row and the progress line; every eval_every steps (or epoch)
// the validation set is scored with data/metric.h; the run stops early when the validation
// query accuracy (mean over subtasks) reaches target_accuracy. Checkpoints: see checkpoint.h,
// in <run_dir>/checkpoints/step_<n>.safetensors (the newest keep_checkpoints kept), and
// <run_dir>/final.safetensors at the end, with loss and accuracy charts (train/plot.h:
// loss.{png,svg}, accuracy.{png,svg}; redrawn by test_table() with the test rows).
//
// ---- Exact resume ------------------------------------------------------------------------------
// A checkpoint holds the parameters, AdamW's state and step counts, (epoch, step, cursor) and
// the config. Resuming rebuilds the data from the seeds, reloads all of it and continues at the
// cursor: the losses are bit-identical to an uninterrupted run on the same device and thread
// count (every kernel is deterministic). The resumed run keeps metrics.jsonl's rows up to the
// checkpoint's step and appends its own.
//
// ---- metrics.jsonl rows ------------------------------------------------------------------------
//   {"kind":"train","step":s,"epoch":e,"loss":l (mean over the rows since the last one),
//    "last_loss":l_s,"lr":..,"grad_norm":.. (global, of step s, before any clipping),"acc":labelled-token accuracy of step s (all its micro-batches),
//    "tokens_per_s":..,"elapsed_s":..,"train_s":.. (elapsed minus evaluation and checkpoint time),
//    "peak_bytes":.. (CUDA runs: the caching allocator's high-water mark),
//    "grad_norms":{"<parameter>":norm, ...} (with log_grad_norms: each one before clipping)}
//   {"kind":"warning","step":s,"parameter":..,"grad_norm":..,"running_median":..}  when a
//    parameter's gradient norm exceeds 100x the median of its last 50 logged norms
//    (train/grad_monitor.h); the same line goes to the console as "warning: ...".
//   {"kind":"eval","split":"valid","variant":..,"step":s,"train_s":..,"loss":..,"query_acc":mean,
//    "token_acc":pooled,"token_acc_mean":..,"subtasks":[{"L":..,"N":..,"query_acc":..,"token_acc":..}]}
// LM runs: train rows also carry "bpb" (of "loss"); "acc" is next-byte accuracy; eval and test
// rows are {"kind":"eval"|"test","split":..,"step":s,["train_s":.. (eval),]"loss":..,"bpb":..,"perplexity":..,
//  "tokens":n}.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "data/metric.h"
#include "data/mqar.h"
#include "data/text.h"
#include "nn/config.h"
#include "nn/mamba.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
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

    // The data of one variant and split over the grid (cells the variant cannot hold are skipped).
    data::MqarGridData generate(data::MqarVariant v, data::Split split, int64_t examples_per_cell) const;
    // The largest data::mqar_model_vocab over the training and test variants; kTextVocab for lm.
    int64_t model_vocab() const;
    bool is_lm() const { return kind == TaskKind::Lm; }
};

struct TrainConfig {
    nn::MambaConfig model = nn::MambaConfig::preset("zoology", 64);
    TaskConfig task;
    uint64_t seed = 0;
    int64_t batch_size = 32;      // examples per forward/backward (micro-batch)
    int64_t grad_accum_steps = 1; // micro-batches per optimizer step (see "The loop")
    int64_t epochs = 2, max_steps = 0;
    bool shuffle = true;
    double lr = 1e-2, beta1 = 0.9, beta2 = 0.95, eps = 1e-6, weight_decay = 0.1;
    std::string no_decay = "none"; // "none" | "mamba_ssm"
    AdamWStyle adamw = AdamWStyle::Transformers;
    ScheduleKind schedule = ScheduleKind::Cosine;
    double warmup_fraction = 0.1, min_lr = 0;
    double clip_value = 1.0, clip_norm = 0;
    bool nan_guard = true;
    bool log_grad_norms = false; // every parameter's gradient norm in each train row of metrics.jsonl
    int64_t eval_every = 256, log_every = 10;
    double target_accuracy = 0.99;
    std::string device = "auto";
    std::string run_dir = "runs/mqar-standard";
    int64_t checkpoint_every = 0, keep_checkpoints = 2;
    std::string resume;

    // The config as JSON with every key (the model fully resolved, no preset): what config.json
    // and checkpoints store; from_json(to_json()) gives the same config.
    nlohmann::ordered_json to_json() const;
    // Throws mg::Error "train config: <dotted key> ..." naming the key and what is allowed.
    static TrainConfig from_json(const nlohmann::json& j);
    void validate() const;
    Device resolved_device() const; // "auto": cuda when a CUDA device is visible, else cpu
};

// Sets the dotted key (e.g. "task.grid", "model.d_model", "lr") of `config` to `value`, read as
// JSON when it parses as JSON (numbers, true/false/null, arrays, objects, "quoted strings") and
// as a plain string otherwise. Intermediate objects are created; an unknown key is caught later
// by TrainConfig::from_json.
void apply_override(nlohmann::json& config, const std::string& key, const std::string& value);

// The default model section: {"preset": "zoology", "d_model": 64, "vocab_size": "auto"}.
nlohmann::json default_model_json();

// The metadata key holding the run's config in checkpoints (train/checkpoint.h's layout).
inline constexpr const char* kCheckpointConfigKey = "mambagrad.config";

// ---- evaluation -----------------------------------------------------------------------------------
struct EvalResult {
    data::MqarScore score;
    double loss = 0; // mean cross-entropy over every labelled position (nats)
    int64_t labelled = 0;
    // LM: every target is a byte (data/text.h), so these are per byte.
    double bits_per_byte() const { return data::bits_per_byte(loss); }
    double perplexity() const;
};
// One forward pass per length-uniform batch, greedy argmax at the labelled positions (the only
// ones the metric reads), scored with data::MqarMetric. No autograd; the model in eval mode
// (dropout off) for the call, its train/eval flag restored after.
EvalResult evaluate_mqar(nn::MambaLM& model, const std::vector<data::MqarExample>& examples, int64_t batch_size);

// LM: the mean cross-entropy over the stride-seq_len windows of `tokens` (data::text_windows),
// batch_size windows per forward pass, the first max_batches batches (0: all). No autograd;
// score is left empty, labelled counts the targets. Eval mode as evaluate_mqar.
EvalResult evaluate_lm(nn::MambaLM& model, std::span<const int32_t> tokens, int64_t seq_len,
                       int64_t batch_size, int64_t max_batches = 0);
// "loss 1.2345 nats/byte, 1.7810 bits/byte, perplexity 3.44 (n bytes)".
std::string format_lm_result(const EvalResult& r);

// The per-subtask table: one column per (name, score), rows "L  N" in (L, N) order (a cell a
// column lacks shows "--"), then the mean query accuracy and the pooled token accuracy, in %.
std::string format_score_table(const std::vector<std::pair<std::string, data::MqarScore>>& columns,
                               const std::string& title);

// A trained model read back from a checkpoint, for evaluation.
struct LoadedModel {
    TrainConfig config;
    std::unique_ptr<nn::MambaLM> model;
    TrainerState state;
};
// The model of cfg (cfg.model on cfg.resolved_device()) with the checkpoint's parameters.
LoadedModel load_model(const std::string& checkpoint, const TrainConfig& cfg);
// The same with the checkpoint's own config (its device replaced by `device`).
LoadedModel load_model(const std::string& checkpoint, const std::string& device = "auto");
// The config JSON stored in a checkpoint (throws when it has none).
nlohmann::json checkpoint_config(const std::string& checkpoint);

// ---- the trainer ----------------------------------------------------------------------------------
struct StepLoss {
    int64_t step = 0; // 1-based optimizer step
    double loss = 0;
};

struct TrainSummary {
    int64_t steps = 0, epochs = 0; // where the run stands (optimizer steps, completed epochs)
    bool early_stopped = false;
    std::optional<EvalResult> last_valid;
    double seconds = 0;
    std::string final_checkpoint; // "" without a run_dir
};

class Trainer {
public:
    // Builds the model (or reloads it with the optimizer and position when cfg.resume is set),
    // the data and the optimizer. Progress and eval lines go to `out` (nullptr: silent).
    explicit Trainer(TrainConfig cfg, std::FILE* out = stdout);
    ~Trainer();

    // Trains until the last step, early stop, or (when stop_after_step >= 0) that step; the
    // latter leaves the run resumable in memory and on disk (a checkpoint is written when a
    // run_dir is set). Returns where it stands.
    TrainSummary train(int64_t stop_after_step = -1);

    // Scores `variant` on `split` over the task grid (examples from the task's seeds).
    EvalResult evaluate(data::MqarVariant variant, data::Split split) const;
    // LM: evaluate_lm on the corpus's `split` (task.eval_batches batches).
    EvalResult evaluate_lm_split(data::Split split) const;
    // The test split of every task.test_variants, as a table (format_score_table); LM: the test
    // split's loss, bits per byte and perplexity (one line; "" when test_fraction is 0). Each
    // score also goes to metrics.jsonl as a {"kind":"test", ...} row.
    std::string test_table();

    void save_checkpoint(const std::string& path) const;

    const TrainConfig& config() const { return cfg_; }
    const nn::MambaLM& model() const { return *model_; }
    nn::MambaLM& model() { return *model_; }
    const std::vector<StepLoss>& losses() const { return losses_; } // the steps this Trainer ran
    const TrainerState& state() const { return state_; }
    int64_t total_steps() const { return total_steps_; }
    int64_t batches_per_epoch() const { return per_epoch_; }
    const std::string& run_dir() const { return run_dir_; }

private:
    std::vector<std::vector<int64_t>> epoch_plan(int64_t epoch) const;
    struct Batch {
        Tensor inputs, positions, targets; // (B, L); the labelled positions b*L + t and their targets
    };
    // The next step's micro-batches: MQAR plan_[cursor] cut into batch_size pieces; LM
    // grad_accum_steps sampled batches of batch_size windows.
    std::vector<Batch> next_batches() const;
    void log_eval(const EvalResult& r, int64_t step, double train_s);
    void write_periodic_checkpoint();

    TrainConfig cfg_;
    std::FILE* out_;
    Device device_;
    std::unique_ptr<nn::MambaLM> model_;
    std::unique_ptr<AdamW> opt_;
    LrSchedule schedule_;
    std::vector<data::MqarExample> train_, valid_;
    std::vector<std::vector<int64_t>> plan_; // epoch 0's batches (sizes are the same every epoch)
    data::TextSplits text_;                  // LM: the corpus's splits
    int64_t per_epoch_ = 0, total_steps_ = 0, total_epochs_ = 0;
    TrainerState state_;
    // Where flashlongconv's dropout draws its masks: the init generator's state after the model
    // was built, or the checkpoint's (state_.rng_seed/rng_offset, written back before each save),
    // so a resumed run draws the masks the uninterrupted one would have.
    Generator dropout_gen_;
    std::vector<StepLoss> losses_;
    std::string run_dir_;
    std::unique_ptr<MetricsLog> log_;
    std::vector<std::string> checkpoints_; // written by this Trainer, oldest first
};

// Parses `mambagrad train` arguments after the subcommand: --config FILE, --key value,
// --key=value (dotted keys, see apply_override). Without --config the defaults are used, or the
// checkpoint's config when --resume is given. --task.kind that changes the kind starts the task
// section afresh (and the default run_dir becomes runs/lm). Throws mg::Error on a bad argument.
TrainConfig parse_train_args(const std::vector<std::string>& args);

} // namespace mg::train
