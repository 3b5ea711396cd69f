// train/cli_eval.cpp: see train/cli_eval.h.
#include "train/cli_eval.h"

#include <fmt/format.h>

#include <chrono>

#include "tensor/json.h"
#include "train/command_line.h"
#include "train/evaluate.h"
#include "train/generate.h"
#include "train/model.h"
#include "train/pretrained.h"

namespace mg::train {

namespace {

// The config of a checkpoint that must be a language model (`what` names the command).
nlohmann::json lm_checkpoint_config(const std::string& checkpoint, const char* what) {
    nlohmann::json j = train::checkpoint_config(checkpoint);
    const std::string kind = train::task_kind(j);
    MG_CHECK(kind == "lm", "{}: checkpoint '{}' was trained on task.kind {}, not a language model (task.kind lm)",
             what, checkpoint, kind);
    return j;
}

int cmd_eval_lm(const std::string& checkpoint, const std::string& split_name, const std::string& corpus,
                const std::string& device) {
    const data::Split split = data::parse_split(split_name);
    nlohmann::json j = lm_checkpoint_config(checkpoint, "eval");
    j["device"] = device;
    if (!corpus.empty()) j["task"]["corpus"] = corpus;
    train::LoadedModel m = train::load_model(checkpoint, train::TrainConfig::from_json(j));
    const train::TaskConfig& task = m.config.task;
    const std::unique_ptr<data::Tokenizer> tok = data::load_tokenizer(task.tokenizer);
    const data::TextSplits text =
        data::load_text_corpus(task.corpus, task.valid_fraction, task.test_fraction, tok.get()).splits;
    const std::vector<int32_t>& tokens = split == data::Split::Train   ? text.train
                                         : split == data::Split::Valid ? text.valid
                                                                       : text.test;
    MG_CHECK(!tokens.empty(), "eval: the {} split of '{}' is empty (task.{}_fraction is 0 in this checkpoint)",
             data::split_name(split), task.corpus, data::split_name(split));
    train::EvalResult r = train::evaluate_lm(*m.model, tokens, task.seq_len, m.config.batch_size, 0, tok.get());
    fmt::print("{} split of {} (seq_len {}), checkpoint {} (step {}): {}\n", data::split_name(split), task.corpus,
               task.seq_len, checkpoint, m.state.step, train::format_lm_result(r));
    return 0;
}

int cmd_generate_run(const std::string& checkpoint, const std::string& prompt, const train::GenerateOptions& o,
                     const std::string& device, const std::string& tokenizer, int64_t num_samples, bool stats) {
    train::validate(o);
    MG_CHECK(num_samples >= 1, "generate: --num_samples is {}, expected an integer >= 1", num_samples);
    nlohmann::json j = lm_checkpoint_config(checkpoint, "generate");
    j["device"] = device;
    if (!tokenizer.empty()) j["task"]["tokenizer"] = tokenizer;
    train::LoadedModel m = train::load_model(checkpoint, train::TrainConfig::from_json(j));
    const std::unique_ptr<data::Tokenizer> tok = data::load_tokenizer(m.config.task.tokenizer);
    const std::vector<int32_t> prompt_ids = tok->encode(prompt);
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::vector<int32_t>> samples;
    if (num_samples == 1) { // streamed as drawn
        std::fwrite(prompt.data(), 1, prompt.size(), stdout);
        samples.push_back(train::generate_ids(*m.model, *tok, prompt_ids, o, [&](int32_t id) {
            const std::string bytes = tok->token_bytes(id);
            std::fwrite(bytes.data(), 1, bytes.size(), stdout);
            std::fflush(stdout);
        }));
        std::fputc('\n', stdout);
    } else {
        samples = train::generate_batch(*m.model, *tok, prompt_ids, o, num_samples);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (num_samples > 1)
        for (size_t b = 0; b < samples.size(); ++b)
            fmt::print("--- sample {} (seed {}) ---\n{}{}\n", b, o.seed + b, prompt, tok->decode(samples[b]));
    if (stats) {
        size_t made = 0, longest = 0;
        for (const auto& s : samples) made += s.size(), longest = std::max(longest, s.size());
        fmt::print(stderr, "generate: {} new tokens ({} sample{} of up to {}) after a prompt of {} tokens, in {:.3f} s: "
                   "{:.1f} new tokens/s, {:.3f} ms a step of batch {} ({}, {})\n", made, num_samples,
                   num_samples == 1 ? "" : "s", longest, prompt_ids.size(), secs, double(made) / secs,
                   1e3 * secs / double(longest + prompt_ids.size() + 1), num_samples, m.config.resolved_device().str(),
                   tok->name());
    }
    return 0;
}

} // namespace

int cmd_generate(const std::vector<std::string>& args) {
    std::string checkpoint, prompt, device = "auto", tokenizer;
    train::GenerateOptions o;
    int64_t num_samples = 1;
    bool stats = false;
    CommandLine cl("generate", "generate --checkpoint FILE|DIR [options]",
                   "Samples text from a language model (a checkpoint of a task.kind lm run, or a transformers\n"
                   "Mamba model folder) in recurrent mode, one token at a time, printing as it goes. The text\n"
                   "goes through the model's tokenizer: bytes, or the tokenizer.json of its task.tokenizer or\n"
                   "its folder.");
    cl.option("--checkpoint", "FILE|DIR", checkpoint, "a checkpoint of a task.kind lm run, or a model folder")
        .required("--checkpoint")
        .option("--prompt", "TEXT", prompt, "text the sample continues (default: none, the text's start)")
        .option("--max_new_tokens", "N", o.max_new_tokens, "tokens to draw at most (stops early at the end token)", "256")
        .option("--temperature", "NUM", o.temperature, "softmax temperature; 0: greedy (argmax)", "1")
        .option("--top_k", "N", o.top_k, "draw among the k most likely tokens only (0: all)", "0")
        .option("--seed", "N", o.seed, "the sampling seed: the same seed gives the same text", "0")
        .option("--num_samples", "N", num_samples, "continuations drawn at once, as one batch (sample b: seed + b)", "1")
        .flag("--stats", stats, "print the tokens/s to stderr at the end")
        .option("--tokenizer", "FILE", tokenizer, "a tokenizer.json to use instead of the model's own")
        .option("--device", "DEV", device, "auto, cpu, cuda or cuda:N", "auto");
    if (!cl.parse(args)) return 0;
    return cmd_generate_run(checkpoint, prompt, o, device, tokenizer, num_samples, stats);
}

namespace {

// "standard,last" -> ["standard", "last"] (validated by the config).
nlohmann::json split_list(const std::string& s) {
    nlohmann::json out = nlohmann::json::array();
    size_t at = 0;
    while (at <= s.size()) {
        size_t comma = s.find(',', at);
        if (comma == std::string::npos) comma = s.size();
        out.push_back(s.substr(at, comma - at));
        at = comma + 1;
    }
    return out;
}

// One line of each column's loss, under a score table.
std::string format_losses(const std::vector<std::pair<std::string, double>>& losses) {
    std::string out = "loss (mean cross-entropy per labelled token, nats):";
    for (const auto& [name, loss] : losses) out += fmt::format(" {} {:.4f}", name, loss);
    return out + "\n";
}

// eval --data FILE: the examples of a JSONL file in the paper's format (ours or the authors').
int cmd_eval_data(const std::string& checkpoint, const std::string& file, const std::string& device) {
    const nlohmann::json j = train::checkpoint_config(checkpoint);
    MG_CHECK(train::task_kind(j) != "lm", "eval: --data scores MQAR JSONL; checkpoint '{}' is a language model (use "
             "--corpus)", checkpoint);
    const std::vector<data::MqarExample> examples = data::load_jsonl(file);
    MG_CHECK(!examples.empty(), "eval: --data '{}' holds no examples", file);
    train::LoadedModel m = train::load_model(checkpoint, device);
    const int64_t vocab = m.config.model_vocab_size();
    for (size_t e = 0; e < examples.size(); ++e)
        for (int32_t id : examples[e].inputs)
            MG_CHECK(id < vocab, "eval: --data '{}': example {} holds token id {}, but the model's vocabulary is {} "
                     "(model.vocab_size); was the data made for another vocabulary?", file, e, id, vocab);
    const train::EvalResult r = train::evaluate_mqar(*m.model, examples, m.config.batch_size);
    const std::string name = std::filesystem::path(file).filename().string();
    fmt::print("{}", train::format_score_table({{name, r.score}},
                                               fmt::format("query accuracy (%) on {} ({} examples); checkpoint {} (step {}, "
                                                           "trained on {})", file, examples.size(), checkpoint,
                                                           m.state.step, data::variant_name(m.config.task.variant))));
    fmt::print("{}", format_losses({{name, r.loss}}));
    return 0;
}

int cmd_eval_mqar(const std::string& checkpoint, const std::string& variants, const std::string& grid,
             int64_t examples, const std::string& split_name, const std::string& device) {
    MG_CHECK(!checkpoint.empty(), "eval: --checkpoint is required");
    const data::Split split = data::parse_split(split_name);
    nlohmann::json j = train::checkpoint_config(checkpoint);
    MG_CHECK(train::task_kind(j) != "lm",
             "eval: checkpoint '{}' is a language model (task.kind lm): --variant, --grid and --examples apply to "
             "MQAR checkpoints", checkpoint);
    j["device"] = device;
    if (!variants.empty()) j["task"]["test_variants"] = split_list(variants);
    if (!grid.empty()) train::apply_override(j, "task.grid", grid);
    if (examples > 0) j["task"][split == data::Split::Valid ? "valid_examples" : "test_examples"] = examples;
    train::LoadedModel m = train::load_model(checkpoint, train::TrainConfig::from_json(j));
    const train::TaskConfig& task = m.config.task;
    std::vector<std::pair<std::string, data::MqarScore>> cols;
    std::vector<std::pair<std::string, double>> losses;
    for (data::MqarVariant v : task.test_variants) {
        const int64_t n = split == data::Split::Test    ? task.test_examples
                          : split == data::Split::Valid ? task.valid_examples
                                                        : task.train_examples;
        const train::EvalResult r = train::evaluate_mqar(*m.model, task.generate(v, split, n).examples, m.config.batch_size);
        cols.emplace_back(std::string(data::variant_name(v)), r.score);
        losses.emplace_back(std::string(data::variant_name(v)), r.loss);
    }
    fmt::print("{}", train::format_score_table(
                         cols, fmt::format("query accuracy (%) on the {} split; checkpoint {} (step {}, trained on {})",
                                           data::split_name(split), checkpoint, m.state.step,
                                           data::variant_name(task.variant))));
    fmt::print("{}", format_losses(losses));
    return 0;
}

} // namespace

int cmd_eval(const std::vector<std::string>& args) {
    std::string checkpoint, variants, grid, split = "test", device = "auto", corpus, data_file;
    int64_t examples = 0;
    CommandLine cl("eval", "eval --checkpoint FILE [options]",
                   "Scores a checkpoint: MQAR variants (per-subtask query accuracy, one column per variant, and\n"
                   "each variant's loss) or a JSONL file of examples (--data), or for a language model a split's\n"
                   "loss, bits per byte and perplexity.");
    cl.option("--checkpoint", "FILE", checkpoint, "a checkpoint written by `mambagrad train`")
        .required("--checkpoint")
        .option("--variant", "LIST", variants, "comma-separated variants, e.g. standard,last,shuffle (default: the "
                                               "run's test_variants)")
        .option("--grid", "CELLS", grid, "cells LxN, e.g. 64x4,128x8, or zoology / paper (default: the run's)")
        .option("--examples", "N", examples, "examples per cell (default: the run's)")
        .option("--split", "NAME", split, "test, valid or train (an LM checkpoint: default valid)", "test")
        .option("--device", "DEV", device, "auto, cpu, cuda or cuda:N", "auto")
        .option("--corpus", "FILE", corpus, "LM checkpoints: score this text file instead of the run's task.corpus")
        .option("--data", "FILE", data_file, "MQAR checkpoints: score the examples of this JSONL file (the paper's "
                                             "format: `mambagrad data`'s, or the authors' released sets)");
    if (!cl.parse(args)) return 0;
    if (cl.given("--data")) {
        MG_CHECK(!cl.given("--variant") && !cl.given("--grid") && !cl.given("--examples") && !cl.given("--split") &&
                     !cl.given("--corpus"),
                 "eval: --data scores the file's examples; --variant, --grid, --examples, --split and --corpus do not "
                 "apply");
        return cmd_eval_data(checkpoint, data_file, device);
    }
    // a count the user gave is a count: 0 or less is refused, not replaced by the default
    MG_CHECK(!cl.given("--examples") || examples >= 1, "eval: --examples is {}, expected >= 1", examples);
    const nlohmann::json j = train::checkpoint_config(checkpoint);
    if (train::task_kind(j) == "lm" && !cl.given("--variant") &&
        !cl.given("--grid") && !cl.given("--examples"))
        return cmd_eval_lm(checkpoint, cl.given("--split") ? split : "valid", corpus, device);
    MG_CHECK(corpus.empty(), "eval: --corpus applies to language-model checkpoints; '{}' is MQAR", checkpoint);
    return cmd_eval_mqar(checkpoint, variants, grid, examples, split, device);
}

} // namespace mg::train
