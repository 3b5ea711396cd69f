// train/trainer.h: training a MambaLM on MQAR or byte-level language modelling (SPEC §4-§5): the
// loop, logging, evaluation during training, checkpoints and exact resume. The run's config is
// train/config.h; scoring is train/evaluate.h.
//
// ---- The loop ---------------------------------------------------------------------------------
// Data: task.train_examples per (L, N) cell of the grid (data::generate_mqar_grid, split train),
// cut into length-uniform batches of batch_size * grad_accum_steps examples, one per optimizer
// step (data::epoch_plan: with shuffle, epoch e's order is a pure function of (seed, e): the
// examples of each length are permuted, cut into batches, and the batches permuted; without
// shuffle: data::batch_plan's longest-first order, the paper's). A step uploads only what it reads:
// the inputs and the labelled positions with their targets. So (epoch, cursor = batches consumed in the epoch, i.e.
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
// count (every kernel is deterministic). The resumed run keeps the metrics.jsonl rows the
// checkpoint counted (TrainerState::metrics_rows; older checkpoints: the rows up to its step)
// and appends its own, so its log is the uninterrupted run's, wherever it was stopped (kill -9
// included: tests/test_reliability.cpp).
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
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dir_lock.h"
#include "data/mqar.h"
#include "data/text.h"
#include "nn/lm.h"
#include "ops/matmul.h"
#include "tensor/error.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/evaluate.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"

namespace mg::train {

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

// train() ended early because the process got SIGINT or SIGTERM: the step in flight was
// finished and checkpointed; what() says where the checkpoint is and how to resume.
struct Interrupted : Error {
    Interrupted(int sig, const std::string& message) : Error(message), signal(sig) {}
    int signal;
};

class Trainer {
public:
    // Builds the model (or reloads it with the optimizer and position when cfg.resume is set),
    // the data and the optimizer. Progress and eval lines go to `out` (nullptr: silent).
    // With `comm` (train/distributed.h) this process is one rank of a data-parallel run: it
    // trains on its rows of every batch, and only rank 0 writes the run directory and prints.
    explicit Trainer(TrainConfig cfg, std::FILE* out = stdout, Communicator* comm = nullptr);
    ~Trainer();

    // Trains until the last step, early stop, or (when stop_after_step >= 0) that step; the
    // latter leaves the run resumable in memory and on disk (a checkpoint is written when a
    // run_dir is set). Returns where it stands.
    // A first SIGINT or SIGTERM during train() stops it after the step in flight, writes a
    // checkpoint (whatever checkpoint_every says) and throws Interrupted; a second one ends the
    // process at once.
    TrainSummary train(int64_t stop_after_step = -1);

    // Scores `variant` on `split` over the task grid (examples from the task's seeds). With data
    // parallel the scoring is sharded over the ranks (train/evaluate.h), so every rank must call
    // this, and test_table and evaluate_lm_split, alike; each gets the whole result.
    EvalResult evaluate(data::MqarVariant variant, data::Split split) const;
    // LM: the task's tokenizer (task.tokenizer; bytes when ""); null for MQAR.
    const data::Tokenizer* tokenizer() const { return tokenizer_.get(); }
    // LM: evaluate_lm on the corpus's `split` (task.eval_batches batches).
    EvalResult evaluate_lm_split(data::Split split) const;
    // The test split of every task.test_variants, as a table (format_score_table); LM: the test
    // split's loss, bits per byte and perplexity (one line; "" when test_fraction is 0). Each
    // score also goes to metrics.jsonl as a {"kind":"test", ...} row (rank 0's log only).
    std::string test_table();

    void save_checkpoint(const std::string& path) const;

    const TrainConfig& config() const { return cfg_; }
    const nn::LanguageModel& model() const { return *model_; }
    nn::LanguageModel& model() { return *model_; }
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
    // grad_accum_steps sampled batches of batch_size windows. Data parallel: this rank's rows of
    // each (rank_slice; a micro-batch with no rows for it is left out). `labelled` and `tokens`
    // get the whole step's counts, over every rank.
    std::vector<Batch> next_batches(int64_t& labelled, int64_t& tokens) const;
    void log_eval(const EvalResult& r, int64_t step, double train_s);
    void write_periodic_checkpoint();

    // The loop, in pieces (trainer.cpp "the loop"): Loop is what one train() call carries from
    // step to step; StepStats what a step measured for its log line.
    struct Loop;
    struct StepStats;
    StepStats train_step(Loop& loop, bool log_now);
    Tensor reduce_over_ranks(Loop& loop, const Tensor& losses, StepStats& s);
    void settle(Loop& loop, bool all);
    void log_step(Loop& loop, const StepStats& s);
    void run_eval(Loop& loop);
    void checkpoint(Loop& loop);
    void end_epoch(Loop& loop);
    TrainSummary pause(Loop& loop);
    [[noreturn]] void interrupted(Loop& loop, int sig);
    void carry_log(const Loop& loop);
    TrainSummary finish(Loop& loop);

    TrainConfig cfg_;
    std::FILE* out_;
    Device device_;
    std::optional<ScopedMatmulPrecision> precision_; // cfg_.precision, while this Trainer lives
    Communicator* comm_ = nullptr;                   // data parallel: this rank's, else null
    std::unique_ptr<nn::LanguageModel> model_;
    std::unique_ptr<AdamW> opt_;
    LrSchedule schedule_;
    std::vector<data::MqarExample> train_, valid_;
    std::vector<std::vector<int64_t>> plan_; // epoch 0's batches (sizes are the same every epoch)
    data::TextSplits text_;                  // LM: the corpus's splits
    std::unique_ptr<data::Tokenizer> tokenizer_; // LM: task.tokenizer (bytes when "")
    int64_t per_epoch_ = 0, total_steps_ = 0, total_epochs_ = 0;
    TrainerState state_;
    // Where flashlongconv's dropout draws its masks: the init generator's state after the model
    // was built, or the checkpoint's (state_.rng_seed/rng_offset, written back before each save),
    // so a resumed run draws the masks the uninterrupted one would have.
    Generator dropout_gen_;
    std::vector<StepLoss> losses_;
    std::string run_dir_;
    data::DirLock run_lock_; // held while this Trainer lives: one run per directory
    std::unique_ptr<MetricsLog> log_;
    std::vector<std::string> checkpoints_; // step_*.safetensors of this run (resumed: found on disk), oldest first
};

} // namespace mg::train
