// train/evaluate.h: scoring a model: MQAR (data/metric.h's per-subtask query accuracy) and
// language modelling (loss, bits per byte, perplexity), the score table, and loading a trained
// model from a checkpoint.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "data/metric.h"
#include "data/mqar.h"
#include "data/text.h"
#include "nn/lm.h"
#include "nn/mamba.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace mg::train {

// ---- evaluation -----------------------------------------------------------------------------------
struct EvalResult {
    data::MqarScore score;
    double loss = 0; // mean cross-entropy over every labelled position (nats)
    int64_t labelled = 0;
    // LM: the bytes the targets stand for (data::Tokenizer::target_bytes; = labelled with the
    // byte tokenizer, where the loss is already per byte). Bits per byte = the summed loss over
    // the bytes, / ln 2; perplexity is per token.
    int64_t bytes = 0;
    double bits_per_byte() const {
        return data::bits_per_byte(bytes > 0 ? loss * double(labelled) / double(bytes) : loss);
    }
    double perplexity() const;
};
class Communicator; // train/distributed.h

// One forward pass per length-uniform batch, greedy argmax at the labelled positions (the only
// ones the metric reads), scored with data::MqarMetric. No autograd; the model in eval mode
// (dropout off) for the call, its train/eval flag restored after.
//
// Sharded (comm, data parallel: every rank calls it with the same model and examples): rank r
// runs batches r, r + world, ... of the plan (round robin, so each rank gets its share of every
// length), and the counts (per (L, N) cell: examples, queries, correct queries, tokens, correct
// tokens) and the loss sum are summed over the ranks in rank order. Every rank returns the whole
// result: the accuracies are exactly the single-process ones, the loss equal up to the order of
// the double sum.
EvalResult evaluate_mqar(nn::LanguageModel& model, const std::vector<data::MqarExample>& examples, int64_t batch_size,
                         Communicator* comm = nullptr);

// LM: the mean cross-entropy over the stride-seq_len windows of `tokens` (data::text_windows),
// batch_size windows per forward pass, the first max_batches batches (0: all). No autograd;
// score is left empty, labelled counts the targets, bytes their bytes by `tokenizer` (nullptr:
// bytes, one per target). Eval mode as evaluate_mqar, and sharded as it (by batch, round robin;
// the loss sum, the targets and the bytes summed over the ranks).
EvalResult evaluate_lm(nn::LanguageModel& model, std::span<const int32_t> tokens, int64_t seq_len,
                       int64_t batch_size, int64_t max_batches = 0, const data::Tokenizer* tokenizer = nullptr,
                       Communicator* comm = nullptr);
// "loss 1.2345 nats/byte, 1.7810 bits/byte, perplexity 3.44 (n bytes)"; with a tokenizer of
// several bytes a token: "loss 3.1 nats/token, 1.02 bits/byte, perplexity 22.2 (n tokens, m bytes)".
std::string format_lm_result(const EvalResult& r);

// The per-subtask table: one column per (name, score), rows "L  N" in (L, N) order (a cell a
// column lacks shows "--"), then the mean query accuracy and the pooled token accuracy, in %.
std::string format_score_table(const std::vector<std::pair<std::string, data::MqarScore>>& columns,
                               const std::string& title);

// A trained model read back from a checkpoint, for evaluation.
struct LoadedModel {
    TrainConfig config;
    std::unique_ptr<nn::LanguageModel> model;
    TrainerState state;
    // The model as a MambaLM (probe, the Mamba's internals); throws mg::Error naming the
    // architecture when it is another.
    nn::MambaLM& mamba() const;
};
// Checks a checkpoint's header against a run config's model before anything is allocated: every
// parameter of cfg's model (model_parameter_specs) is in the file with its shape and a float dtype, and
// every tensor of the file is a parameter or optimizer state ("optimizer."). `what` names the
// command in the error ("eval", "train --resume"). eval, generate, probe, info and --resume all
// run it, so they accept the same files; the data (checksum, NaN/Inf) is checked as it is read.
SafetensorsHeader check_checkpoint_header(const std::string& checkpoint, const TrainConfig& cfg, const char* what);
// Copies the parameters of a checkpoint file or a model folder (train/pretrained.h) into `model`
// (every check first: nothing changes unless all pass); the trainer state of a file, a default
// one for a folder.
TrainerState load_parameters(const std::string& source, nn::LanguageModel& model);
// The model of cfg (its architecture, on cfg.resolved_device()) with the checkpoint's parameters
// (a checkpoint file, or a model folder: train/pretrained.h).
LoadedModel load_model(const std::string& checkpoint, const TrainConfig& cfg);
// The same with the checkpoint's own config (its device replaced by `device`).
LoadedModel load_model(const std::string& checkpoint, const std::string& device = "auto");

} // namespace mg::train
