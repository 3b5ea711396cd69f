// train/trainer.cpp: see train/trainer.h.
#include "train/trainer.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <deque>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "autograd/grad_mode.h"
#include "data/atomic_file.h"
#include "data/dir_lock.h"
#include "ops/cat.h"
#include "ops/cross_entropy.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/reduce.h"
#include "tensor/check.h"
#include "tensor/json.h"
#include "tensor/random.h"
#include "tensor/runtime.h"
#include "train/clip.h"
#include "train/grad_monitor.h"
#include "train/guard.h"
#include "train/metrics.h"
#include "train/model.h"
#include "train/plot.h"
#include "train/run_dir.h"
#include "train/stop_signals.h"

namespace mg::train {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// How many labelled positions (b*L + t, with their targets) the argmax of the logits gets right;
// h (B, L, d) are the batch's final hidden states and W the LM head.
int64_t count_correct(const Tensor& positions, const Tensor& targets, const Tensor& h, const Tensor& W) {
    autograd::NoGrad no_grad;
    const int64_t B = h.size(0), L = h.size(1), P = positions.size(0);
    Tensor logits = linear(embedding(positions, h.detach().reshape({B * L, h.size(2)})), W.detach());
    // the greedy prediction on the device: P indices come back, not P x V logits
    const std::vector<int32_t> pred = argmax(logits, 1).to(Device::cpu()).to_vector<int32_t>();
    const std::vector<int32_t> tgt = targets.to(Device::cpu()).to_vector<int32_t>();
    int64_t right = 0;
    for (int64_t p = 0; p < P; ++p) right += pred[size_t(p)] == tgt[size_t(p)];
    return right;
}

ojson score_json(const EvalResult& r) {
    ojson subtasks = ojson::array();
    for (const auto& s : r.score.subtasks)
        subtasks.push_back({{"L", s.seq_len}, {"N", s.num_kv_pairs}, {"query_acc", s.query_acc()},
                            {"token_acc", s.token_acc()}});
    return {{"loss", r.loss},
            {"query_acc", r.score.query_acc_mean},
            {"token_acc", r.score.token_acc},
            {"token_acc_mean", r.score.token_acc_mean},
            {"subtasks", subtasks}};
}

ojson lm_score_json(const EvalResult& r) {
    return {{"loss", r.loss}, {"bpb", r.bits_per_byte()}, {"perplexity", r.perplexity()}, {"tokens", r.labelled},
            {"bytes", r.bytes}};
}

} // namespace

// ---- the trainer ------------------------------------------------------------------------------------

Trainer::Trainer(TrainConfig cfg, std::FILE* out, Communicator* comm) : cfg_(std::move(cfg)), out_(out), comm_(comm) {
    cfg_.validate();
    if (comm_ && comm_->world() > 1) {
        MG_CHECK(!(cfg_.model.global_selection.enabled &&
                   cfg_.model.global_selection.kind == nn::GlobalSelectionKind::flashlongconv),
                 "train --ranks: global_selection kind flashlongconv draws dropout masks per batch row, which a "
                 "split batch would draw differently; it is not supported data-parallel");
        if (comm_->rank() > 0) { // rank 0 alone writes the run directory and prints
            out_ = nullptr;
            cfg_.run_dir = "";
        }
    } else {
        comm_ = nullptr; // a world of one is a plain run
    }
    device_ = cfg_.resolved_device();
    MG_CHECK(cfg_.precision == "fp32" || device_.is_cuda(), "train: precision is \"{}\", which applies to CUDA devices "
             "only; device \"{}\" resolved to the CPU (use precision fp32)", cfg_.precision, cfg_.device);
    // process-wide, as torch's allow_tf32: every GEMM while this Trainer lives, its evaluations
    // included; the previous setting comes back when it is destroyed
    precision_.emplace(cfg_.precision == "tf32" ? MatmulPrecision::tf32 : MatmulPrecision::fp32);

    if (cfg_.task.is_lm()) {
        const TaskConfig& t = cfg_.task;
        tokenizer_ = data::load_tokenizer(t.tokenizer);
        text_ = data::load_text_corpus(t.corpus, t.valid_fraction, t.test_fraction, tokenizer_.get()).splits;
        const int64_t n = int64_t(text_.train.size());
        MG_CHECK(n > t.seq_len + 1, "train: the train split of task.corpus '{}' has {} tokens, fewer than a window of "
                 "task.seq_len + 1 = {}", t.corpus, n, t.seq_len + 1);
        using Held = std::pair<const std::vector<int32_t>*, const char*>;
        for (auto [split, fraction] : {Held{&text_.valid, "valid_fraction"}, Held{&text_.test, "test_fraction"}})
            MG_CHECK(split->empty() || data::num_text_windows(int64_t(split->size()), t.seq_len) > 0,
                     "train: task.{} gives {} tokens of '{}', fewer than a window of task.seq_len + 1 = {}; raise it "
                     "or set it to 0", fraction, split->size(), t.corpus, t.seq_len + 1);
        per_epoch_ = std::max<int64_t>(1, n / (cfg_.batch_size * cfg_.grad_accum_steps * t.seq_len));
    } else {
        train_ = cfg_.task.generate(cfg_.task.variant, data::Split::Train, cfg_.task.train_examples).examples;
        valid_ = cfg_.task.generate(cfg_.task.variant, data::Split::Valid, cfg_.task.valid_examples).examples;
        plan_ = epoch_plan(0);
        per_epoch_ = int64_t(plan_.size());
    }
    const int64_t per_epoch = per_epoch_;
    total_steps_ = cfg_.max_steps > 0 ? cfg_.max_steps : cfg_.epochs * per_epoch;
    total_epochs_ = (total_steps_ + per_epoch - 1) / per_epoch;
    schedule_.kind = cfg_.schedule;
    schedule_.base_lr = cfg_.lr;
    schedule_.min_lr = cfg_.min_lr;
    schedule_.total_steps = total_steps_;
    schedule_.warmup_fraction = cfg_.warmup_fraction;

    // a checkpoint to resume must fit the config before the model is allocated
    if (!cfg_.resume.empty()) check_checkpoint_header(cfg_.resume, cfg_, "train --resume");
    else if (!cfg_.init.empty()) check_checkpoint_header(cfg_.init, cfg_, "train --init");
    Generator gen(cfg_.seed);
    model_ = make_model(cfg_, Options{DType::f32, device_}, gen);
    AdamWOptions o;
    o.lr = cfg_.lr;
    o.beta1 = cfg_.beta1;
    o.beta2 = cfg_.beta2;
    o.eps = cfg_.eps;
    o.weight_decay = cfg_.weight_decay;
    o.style = cfg_.adamw;
    if (cfg_.no_decay == "mamba_ssm") o.no_decay = mamba_ssm_no_decay;
    // (TrainConfig::validate has checked that every lr_scale key selects a parameter)
    if (!cfg_.lr_scale.empty()) o.lr_scale = [this](const std::string& name) { return cfg_.lr_scale_of(name); };
    opt_ = std::make_unique<AdamW>(model_->named_parameters(), o);
    state_.rng_seed = gen.seed();
    state_.rng_offset = gen.offset();
    // fine-tuning: the parameters of a checkpoint or model folder, a fresh optimizer at step 0 (a
    // resumed run has its own parameters already)
    if (cfg_.resume.empty() && !cfg_.init.empty()) load_parameters(cfg_.init, *model_);

    if (!cfg_.resume.empty()) {
        state_ = load_checkpoint(cfg_.resume, model_->named_parameters(), opt_.get()).state;
        MG_CHECK(state_.step <= total_steps_ && state_.cursor <= per_epoch,
                 "train: checkpoint '{}' stands at step {} (epoch {}, batch {}), past this config's {} steps of {} "
                 "batches per epoch",
                 cfg_.resume, state_.step, state_.epoch, state_.cursor, total_steps_, per_epoch);
        // the data position must be one this config's plan can reach (read_trainer_state checked
        // that every field is >= 0)
        MG_CHECK(state_.step == state_.epoch * per_epoch + state_.cursor,
                 "train: checkpoint '{}' stands at step {}, epoch {}, batch {}: with {} batches per epoch step should "
                 "be epoch * {} + batch = {}; the checkpoint's trainer state or the data config differs",
                 cfg_.resume, state_.step, state_.epoch, state_.cursor, per_epoch, per_epoch,
                 state_.epoch * per_epoch + state_.cursor);
    }
    dropout_gen_.set_state(state_.rng_seed, state_.rng_offset);
    model_->set_dropout_generator(&dropout_gen_);
    if (!cfg_.run_dir.empty()) {
        RunDir rd = open_run_dir(cfg_.run_dir, cfg_.to_json(), !cfg_.resume.empty(), state_.step, state_.metrics_rows);
        run_lock_ = std::move(rd.lock);
        run_dir_ = rd.path;
        checkpoints_ = std::move(rd.checkpoints);
        log_ = std::make_unique<MetricsLog>(rd.metrics, rd.metrics_rows);
    }
    if (out_) {
        std::string cells;
        for (const auto& [L, N] : cfg_.task.grid) cells += fmt::format("{}{}x{}", cells.empty() ? "" : ",", L, N);
        fmt::print(out_, "model: {}: {} parameters on {}{}\n", model_summary(cfg_), model_->num_parameters(), device_.str(),
                   device_.is_cpu() ? fmt::format(" ({} threads)", omp_get_max_threads()) : "");
        const std::string resumed = cfg_.resume.empty() ? "" : fmt::format(" (resumed at step {})", state_.step);
        const std::string batch = cfg_.grad_accum_steps > 1
                                      ? fmt::format("{} micro-batches of {}", cfg_.grad_accum_steps, cfg_.batch_size)
                                      : std::to_string(cfg_.batch_size);
        if (cfg_.task.is_lm())
            fmt::print(out_, "task:  LM on {} through {} ({} / {} / {} train / valid / test tokens), seq_len {}; {} "
                       "batches of {} per epoch, {} steps{}\n",
                       cfg_.task.corpus, tokenizer_->name(), text_.train.size(), text_.valid.size(), text_.test.size(), cfg_.task.seq_len,
                       per_epoch, batch, total_steps_, resumed);
        else
            fmt::print(out_, "task:  MQAR {} (LxN {}), W {}, {} train / {} valid examples; {} batches of {} per epoch, "
                       "{} steps{}\n",
                       data::variant_name(cfg_.task.variant), cells, cfg_.task.vocab_size, train_.size(), valid_.size(),
                       per_epoch, batch, total_steps_, resumed);
        if (!run_dir_.empty()) fmt::print(out_, "run:   {}\n", run_dir_);
        if (run_lock_.previous_holder())
            fmt::print(out_, "note:  the run directory's last user (process {}) ended without releasing it (a crash "
                             "or a kill); its files are as it left them\n", run_lock_.previous_holder());
        std::fflush(out_);
    }
}

Trainer::~Trainer() = default;

std::string Trainer::test_table() {
    if (cfg_.task.is_lm()) {
        if (text_.test.empty()) return "";
        EvalResult r = evaluate_lm_split(data::Split::Test);
        if (log_) {
            ojson row = {{"kind", "test"}, {"split", "test"}, {"step", state_.step}};
            row.update(lm_score_json(r));
            log_->write(row);
        }
        return fmt::format("test split after {} steps: {}\n", state_.step, format_lm_result(r));
    }
    std::vector<std::pair<std::string, data::MqarScore>> cols;
    for (data::MqarVariant v : cfg_.task.test_variants) {
        EvalResult r = evaluate(v, data::Split::Test);
        if (log_) {
            ojson row = {{"kind", "test"}, {"split", "test"}, {"variant", data::variant_name(v)}, {"step", state_.step}};
            row.update(score_json(r));
            log_->write(row);
        }
        cols.emplace_back(std::string(data::variant_name(v)), r.score);
    }
    if (log_) write_run_plots(run_dir_); // again, with the test rows
    return format_score_table(cols, fmt::format("query accuracy (%) on the test split, {} examples per cell; trained "
                                                "on {} for {} steps",
                                                cfg_.task.test_examples, data::variant_name(cfg_.task.variant),
                                                state_.step));
}

void Trainer::save_checkpoint(const std::string& path) const {
    TrainerState st = state_;
    st.rng_seed = dropout_gen_.seed();
    st.rng_offset = dropout_gen_.offset();
    train::save_checkpoint(path, model_->named_parameters(), opt_.get(), st, cfg_.to_json().dump(2));
}

void Trainer::write_periodic_checkpoint() {
    if (run_dir_.empty()) return;
    const std::filesystem::path dir = std::filesystem::path(run_dir_) / "checkpoints";
    std::filesystem::create_directories(dir);
    const std::string path = (dir / fmt::format("step_{:07}.safetensors", state_.step)).string();
    save_checkpoint(path);
    if (std::find(checkpoints_.begin(), checkpoints_.end(), path) == checkpoints_.end()) checkpoints_.push_back(path);
    std::sort(checkpoints_.begin(), checkpoints_.end()); // oldest step first
    while (cfg_.keep_checkpoints > 0 && int64_t(checkpoints_.size()) > cfg_.keep_checkpoints) {
        std::filesystem::remove(checkpoints_.front());
        checkpoints_.erase(checkpoints_.begin());
    }
}

void Trainer::log_eval(const EvalResult& r, int64_t step, double train_s) {
    if (cfg_.task.is_lm()) {
        if (log_) {
            ojson row = {{"kind", "eval"}, {"split", "valid"}, {"step", step}, {"epoch", state_.epoch}, {"train_s", train_s}};
            row.update(lm_score_json(r));
            log_->write(row);
        }
        if (out_) {
            fmt::print(out_, "valid @ step {}: {}\n", step, format_lm_result(r));
            std::fflush(out_);
        }
        return;
    }
    if (log_) {
        ojson row = {{"kind", "eval"}, {"split", "valid"}, {"variant", data::variant_name(cfg_.task.variant)},
                     {"step", step}, {"epoch", state_.epoch}, {"train_s", train_s}};
        row.update(score_json(r));
        log_->write(row);
    }
    if (out_) {
        std::string cells;
        for (const auto& s : r.score.subtasks)
            cells += fmt::format("{}{}x{} {:.1f}", cells.empty() ? "" : ", ", s.seq_len, s.num_kv_pairs, 100 * s.query_acc());
        fmt::print(out_, "valid @ step {}: query acc {:.2f}% ({}), token acc {:.2f}%, loss {:.4f}\n", step,
                   100 * r.score.query_acc_mean, cells, 100 * r.score.token_acc, r.loss);
        std::fflush(out_);
    }
}

// ---- the loop ------------------------------------------------------------------------------------
// Steps in flight: a CUDA step's loss and NaN/Inf findings come back by an asynchronous copy
// (AsyncRead) and are read one step later, so the host queues step s+1 while the GPU still
// runs step s and never drains the queue mid-epoch. A step whose gradients are not finite leaves
// the parameters alone on the device (AdamW's skip word) and is reported, with its own step
// number, when it is settled. Everything is settled before a log line, an evaluation, a checkpoint
// and the end. On the CPU each step is settled at once.
struct Trainer::Loop {
    struct InFlight {
        int64_t step;
        Tensor losses; // the micro-batches' (weighted) losses, f32/f64, on the device
        AsyncRead read;
        FiniteProbe probe;
    };
    explicit Loop(const Trainer& t)
        : params(t.model_->named_parameters()), first_step(t.state_.step), last_eval_step(t.state_.last_eval_step),
          max_inflight(t.device_.is_cuda() ? 1 : 0), window_loss(t.state_.log_loss_sum),
          window_steps(t.state_.log_steps) {
        if (t.out_) bar = std::make_unique<ProgressBar>(t.out_);
        monitor.restore(t.state_.monitor); // where the log stood (a resumed or continued run)
    }
    const std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    NamedTensors params;
    std::vector<std::string> grad_names; // grads_of(params)'s names: the parameters that have a gradient
    GradNormMonitor monitor;
    std::unique_ptr<ProgressBar> bar;
    TrainSummary sum;
    int64_t first_step, plan_epoch = 0; // plan_epoch: the epoch plan_ belongs to
    int64_t last_eval_step;             // where the last evaluation ran (-1: none yet)
    bool stop = false;
    int stop_vote = 0, agreed_signal = 0; // data parallel: this rank's pending signal; the ranks' verdict
    std::deque<InFlight> inflight;
    size_t max_inflight;
    double last_loss = NAN;
    // the logging window: since the last log line (the loss sum and its count carry over a
    // checkpoint, so a resumed run logs what the uninterrupted one would)
    std::chrono::steady_clock::time_point window_t0 = std::chrono::steady_clock::now();
    double window_loss, window_tokens = 0;
    int64_t window_steps;
    double eval_s = 0;     // evaluation time inside the window (not training)
    double nontrain_s = 0; // evaluation and checkpoint time since t0: train_s excludes it
};

struct Trainer::StepStats {
    double lr = 0, grad_norm = NAN; // the global gradient norm before clipping (logged steps only)
    std::vector<double> norms;      // each parameter's, grad_names order (logged steps only)
    int64_t labelled = 0, right = 0; // labelled positions, and how many the pre-step model got right
};

TrainSummary Trainer::train(int64_t stop_after_step) {
    StopSignals signals;
    Loop loop(*this);
    // (a run paused after the last batch of an epoch, the run's last step included, ends that
    // epoch first, as the uninterrupted run did right after the step)
    while (!loop.stop && (state_.step < total_steps_ || state_.cursor >= per_epoch_)) {
        if (state_.cursor >= per_epoch_) { // a run paused at the end of an epoch
            end_epoch(loop);
            continue;
        }
        if (!cfg_.task.is_lm() && loop.plan_epoch != state_.epoch) {
            plan_ = epoch_plan(state_.epoch);
            loop.plan_epoch = state_.epoch;
        }
        const int64_t step = state_.step + 1; // 1-based: the step being taken
        const bool log_now = step % cfg_.log_every == 0 || step == total_steps_;
        if (comm_) loop.stop_vote = signals.pending(); // voted on in the step's reduction
        const StepStats s = train_step(loop, log_now);
        if (log_now) log_step(loop, s);
        if (cfg_.eval_every > 0 && state_.step % cfg_.eval_every == 0) run_eval(loop);
        if (cfg_.checkpoint_every > 0 && state_.step % cfg_.checkpoint_every == 0) checkpoint(loop);
        if (state_.step == stop_after_step) return pause(loop);
        if (const int sig = comm_ ? loop.agreed_signal : signals.pending()) interrupted(loop, sig);
        if (state_.cursor >= per_epoch_) end_epoch(loop);
    }
    return finish(loop);
}

// A stop signal arrived during the step just taken: settle it, write a checkpoint (whatever
// checkpoint_every says), say where it is and how to go on, and end the run with Interrupted.
void Trainer::interrupted(Loop& loop, int sig) {
    pause(loop);
    const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
    if (run_dir_.empty())
        throw Interrupted(sig, fmt::format("interrupted ({}) after step {} of {}; run_dir is \"\", so nothing was "
                                           "saved", name, state_.step, total_steps_));
    const std::string ckpt = (std::filesystem::path(run_dir_) / "checkpoints" /
                              fmt::format("step_{:07}.safetensors", state_.step)).string();
    throw Interrupted(sig, fmt::format("interrupted ({}) after step {} of {}: checkpoint {}; go on with `mambagrad "
                                       "train --resume {}`", name, state_.step, total_steps_, ckpt, ckpt));
}

// One optimizer step: forward and backward of each micro-batch (its mean cross-entropy weighted
// by its share of the step's labelled positions: trainer.h), the NaN/Inf probe, the gradient norms
// (logged steps), clipping, AdamW at the schedule's lr; the loss is read back later (settle).
Trainer::StepStats Trainer::train_step(Loop& loop, bool log_now) {
    StepStats s;
    const int64_t step = state_.step + 1;
    int64_t tokens = 0;
    const std::vector<Batch> micro = next_batches(s.labelled, tokens);
    opt_->zero_grad();
    std::vector<Tensor> micro_losses;
    for (const Batch& b : micro) {
        Tensor h = model_->hidden_states(b.inputs); // (B, L, d)
        Tensor loss = cross_entropy_indexed(h, model_->lm_head_weight(), b.positions, b.targets);
        if (micro.size() > 1 || comm_) loss = loss * (double(b.positions.size(0)) / double(s.labelled));
        loss.backward(); // adds into .grad
        micro_losses.push_back(loss.detach().reshape({1}));
        if (log_now) s.right += count_correct(b.positions, b.targets, h, model_->lm_head_weight());
    }
    loop.window_tokens += double(tokens);
    Tensor losses = micro_losses.empty() ? Tensor() : micro_losses.size() == 1 ? micro_losses[0] : cat(micro_losses, 0);
    if (comm_) losses = reduce_over_ranks(loop, losses, s);
    Loop::InFlight f{step, losses, {}, {}};
    if (cfg_.nan_guard) f.probe = FiniteProbe(step, named_grads(loop.params), "gradient", f.losses);
    if (device_.is_cpu()) f.probe.check(); // before the step: the parameters stay as they were
    const std::vector<Tensor> grads = grads_of(loop.params);
    if (loop.grad_names.empty())
        for (const auto& [name, p] : loop.params)
            if (p.grad().defined()) loop.grad_names.push_back(name);
    if (log_now) { // the norms before any clipping
        s.norms = tensor_norms(grads);
        double sq = 0;
        for (double n : s.norms) sq += n * n;
        s.grad_norm = std::sqrt(sq);
    }
    if (cfg_.clip_value > 0) clip_grad_value(grads, cfg_.clip_value);
    if (cfg_.clip_norm > 0) clip_grad_norm(grads, cfg_.clip_norm);
    s.lr = schedule_.at(state_.step);
    opt_->set_lr(s.lr);
    opt_->step(f.probe.skip_words());
    f.read = AsyncRead(f.losses);
    loop.inflight.push_back(std::move(f));
    ++state_.step;
    ++state_.cursor;
    ++loop.window_steps;
    while (loop.inflight.size() > loop.max_inflight) settle(loop, false);
    return s;
}

// Data parallel: the gradients summed over the ranks (all_reduce_gradients), and with them the
// step's loss, the correct count of a logged step and the stop votes. Returns the step's loss (a
// one-element f64 CPU tensor, every rank's the same).
Tensor Trainer::reduce_over_ranks(Loop& loop, const Tensor& losses, StepStats& s) {
    std::vector<double> stats = {0.0, double(s.right), loop.stop_vote ? 1.0 : 0.0}; // loss, right, stop votes
    if (losses.defined())
        for (double l : losses.to(Device::cpu()).to(DType::f64).to_vector<double>()) stats[0] += l;
    all_reduce_gradients(*comm_, loop.params, stats);
    s.right = int64_t(stats[1]);
    loop.agreed_signal = stats[2] > 0 ? (loop.stop_vote ? loop.stop_vote : SIGTERM) : 0;
    return Tensor::from_vector(std::vector<double>{stats[0]}, {1}, {DType::f64});
}

// Reads back the oldest step in flight (all of them with `all`): its NaN/Inf findings (throws,
// naming the step) and its loss.
void Trainer::settle(Loop& loop, bool all) {
    while (!loop.inflight.empty()) {
        Loop::InFlight& f = loop.inflight.front();
        f.probe.check();
        const void* h = f.read.wait();
        double l = 0;
        for (int64_t i = 0; i < f.losses.numel(); ++i)
            l += f.losses.dtype() == DType::f64 ? static_cast<const double*>(h)[i]
                                                : double(static_cast<const float*>(h)[i]);
        if (cfg_.nan_guard) MG_CHECK(std::isfinite(l), "NaN/Inf guard: step {}: the loss is {}", f.step, l);
        losses_.push_back({f.step, l});
        loop.window_loss += l;
        loop.last_loss = l;
        loop.inflight.pop_front();
        if (!all) return;
    }
}

// The metrics row, the gradient-norm warnings and the progress line of a logged step.
void Trainer::log_step(Loop& loop, const StepStats& s) {
    settle(loop, true);
    // labelled-token accuracy of this step's examples, from the pre-step hidden states
    const double acc = s.labelled ? double(s.right) / double(s.labelled) : 0.0;
    const double dt = seconds_since(loop.window_t0) - loop.eval_s, elapsed = seconds_since(loop.t0);
    const double tok_s = loop.window_tokens / std::max(dt, 1e-9);
    const double mean_loss = loop.window_loss / double(loop.window_steps);
    if (log_) {
        ojson row{{"kind", "train"},        {"step", state_.step},
                  {"epoch", state_.epoch},  {"loss", mean_loss},
                  {"last_loss", loop.last_loss}, {"lr", s.lr},
                  {"grad_norm", s.grad_norm}, {"acc", acc},
                  {"tokens_per_s", tok_s},  {"elapsed_s", elapsed},
                  {"train_s", elapsed - loop.nontrain_s}};
        if (device_.is_cuda()) row["peak_bytes"] = memory_stats(device_).peak_allocated;
        if (cfg_.task.is_lm() && cfg_.task.tokenizer.empty()) row["bpb"] = data::bits_per_byte(mean_loss); // per byte
        if (cfg_.log_grad_norms) {
            ojson per = ojson::object();
            for (size_t i = 0; i < s.norms.size(); ++i) per[loop.grad_names[i]] = s.norms[i];
            row["grad_norms"] = per;
        }
        log_->write(row);
    }
    for (const GradNormWarning& w : loop.monitor.observe(state_.step, loop.grad_names, s.norms)) {
        if (loop.bar) loop.bar->finish();
        if (out_) {
            fmt::print(out_, "warning: {}\n", w.message());
            std::fflush(out_);
        }
        if (log_)
            log_->write(ojson{{"kind", "warning"}, {"step", w.step}, {"parameter", w.name}, {"grad_norm", w.norm},
                              {"running_median", w.median}});
    }
    if (loop.bar) {
        Progress p;
        p.epoch = state_.epoch + 1;
        p.epochs = total_epochs_;
        p.step = state_.step;
        p.total = total_steps_;
        p.loss = mean_loss;
        p.accuracy = acc;
        p.tokens_per_s = tok_s;
        p.eta_s = elapsed / double(state_.step - loop.first_step) * double(total_steps_ - state_.step);
        loop.bar->update(p);
    }
    loop.window_loss = loop.window_tokens = loop.eval_s = 0;
    loop.window_steps = 0;
    loop.window_t0 = std::chrono::steady_clock::now();
}

// Scores the validation split, logs it, and stops the run early at target_accuracy (MQAR).
void Trainer::run_eval(Loop& loop) {
    settle(loop, true);
    const auto e0 = std::chrono::steady_clock::now();
    if (loop.bar) loop.bar->finish();
    loop.last_eval_step = state_.step;
    if (cfg_.task.is_lm() && text_.valid.empty()) return; // valid_fraction 0: nothing to score
    EvalResult r = cfg_.task.is_lm() ? evaluate_lm_split(data::Split::Valid) : evaluate(cfg_.task.variant, data::Split::Valid);
    log_eval(r, state_.step, seconds_since(loop.t0) - loop.nontrain_s - seconds_since(e0));
    loop.sum.last_valid = r;
    if (!cfg_.task.is_lm() && cfg_.target_accuracy > 0 && r.score.query_acc_mean >= cfg_.target_accuracy) {
        loop.sum.early_stopped = true;
        loop.stop = true;
        if (out_) fmt::print(out_, "early stop: validation query accuracy {:.2f}% >= target {:.2f}%\n",
                             100 * r.score.query_acc_mean, 100 * cfg_.target_accuracy);
    }
    loop.eval_s += seconds_since(e0);
    loop.nontrain_s += seconds_since(e0);
}

void Trainer::checkpoint(Loop& loop) {
    settle(loop, true);
    carry_log(loop);
    const auto c0 = std::chrono::steady_clock::now();
    write_periodic_checkpoint();
    loop.nontrain_s += seconds_since(c0);
}

// The log's running state into the trainer state, which checkpoints store (and a later train()
// call on this Trainer starts from).
void Trainer::carry_log(const Loop& loop) {
    state_.log_loss_sum = loop.window_loss;
    state_.log_steps = loop.window_steps;
    state_.monitor = loop.monitor.memory();
    state_.metrics_rows = log_ ? log_->rows() : -1;
    state_.last_eval_step = loop.last_eval_step;
}

// The epoch is done: the next one starts at its first batch (evaluated now when eval_every is 0).
void Trainer::end_epoch(Loop& loop) {
    ++state_.epoch;
    state_.cursor = 0;
    if (cfg_.eval_every == 0 && !loop.stop) run_eval(loop);
}

// train(stop_after_step) reached that step: settled and checkpointed, resumable.
TrainSummary Trainer::pause(Loop& loop) {
    settle(loop, true);
    carry_log(loop);
    if (loop.bar) loop.bar->finish();
    if (!(cfg_.checkpoint_every > 0 && state_.step % cfg_.checkpoint_every == 0)) write_periodic_checkpoint();
    loop.sum.steps = state_.step;
    loop.sum.epochs = state_.epoch;
    loop.sum.seconds = seconds_since(loop.t0);
    return loop.sum;
}

// The end of the run: a last evaluation (unless one just ran), the final checkpoint and plots.
TrainSummary Trainer::finish(Loop& loop) {
    settle(loop, true);
    if (loop.bar) loop.bar->finish();
    if (loop.last_eval_step != state_.step) run_eval(loop);
    TrainSummary& sum = loop.sum;
    if (!run_dir_.empty()) {
        carry_log(loop); // a resume from the final checkpoint keeps the whole log and adds nothing
        sum.final_checkpoint = (std::filesystem::path(run_dir_) / "final.safetensors").string();
        save_checkpoint(sum.final_checkpoint);
        const RunPlots plots = write_run_plots(run_dir_);
        if (out_ && plots.skipped.empty()) fmt::print(out_, "plots: {}\n", fmt::join(plots.files, ", "));
        else if (out_) fmt::print(out_, "plots: skipped ({})\n", plots.skipped);
    }
    sum.steps = state_.step;
    sum.epochs = state_.epoch;
    sum.seconds = seconds_since(loop.t0);
    if (out_) {
        fmt::print(out_, "trained {} steps ({} epochs) in {:.1f} s{}\n", sum.steps - loop.first_step,
                   fmt::format("{:.2f}", double(state_.step) / double(per_epoch_)), sum.seconds,
                   sum.final_checkpoint.empty() ? "" : fmt::format("; checkpoint {}", sum.final_checkpoint));
        std::fflush(out_);
    }
    return sum;
}

} // namespace mg::train
