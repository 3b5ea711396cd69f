// train/cli.cpp: the `mambagrad` command.
//
//   mambagrad info                          build, devices, allocator, BLAS
//   mambagrad info [--config f.json] [--key value ...] [--json]   a model's parameter table
//   mambagrad info --checkpoint f.safetensors [--json]            (train/info.h)
//   mambagrad gradcheck --op matmul [--device cuda] [--dtype f64]
//   mambagrad gradcheck --list
//   mambagrad train [--config f.json] [--key value ...]   (train/trainer.h lists the keys)
//   mambagrad eval --checkpoint f.safetensors [--variant standard,last,shuffle] [--grid 64x4,...]
//   mambagrad eval --checkpoint lm.safetensors [--split valid] [--corpus FILE]   (an LM checkpoint)
//   mambagrad generate --checkpoint lm.safetensors [--prompt TEXT] [--max_new_tokens 256]
//                      [--temperature 1] [--top_k 0] [--seed 0] [--device auto]
//   mambagrad plot RUN_DIR                  loss/accuracy charts (PNG + SVG) from metrics.jsonl
//   mambagrad probe [--checkpoint f.safetensors | --KEY VALUE ...] [--batch 4] [--seq_len 0]
//                   [--dtype f32|f64] [--device auto] [--out probe.safetensors]   (train/probe.h)
//   mambagrad data --out f.jsonl [--variant standard] [--grid 64x4] [--examples 100] [--split train]
//
// Every failure prints one `error: ...` line to stderr and exits with status 2.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <omp.h>

#include "mambagrad.h"
#include "ops/op_table.h"
#include "train/generate.h"
#include "train/info.h"
#include "train/plot.h"
#include "train/probe.h"
#include "train/trainer.h"
#include "tensor/runtime.h"

using namespace mg;

namespace {

int cmd_info() {
    fmt::print("mambagrad\n");
    fmt::print("  CUDA:      {}\n", cuda_compiled() ? "compiled in" : "not compiled (CUDA=0)");
    fmt::print("  devices:   cpu ({} OpenMP threads)", omp_get_max_threads());
    for (int d = 0; d < cuda_device_count(); ++d) fmt::print(", cuda:{} ({})", d, device_name(Device::cuda(d)));
    fmt::print("\n");
    fmt::print("  CPU GEMM:  {}\n", gemm_cpu_uses_openblas() ? "OpenBLAS" : "mambagrad blocked kernel");
    for (int d = 0; d < cuda_device_count(); ++d) {
        auto s = memory_stats(Device::cuda(d));
        fmt::print("  cuda:{} allocator: {} B in use, {} B peak, {} B reserved, {} cudaMalloc calls\n", d,
                   s.allocated, s.peak_allocated, s.reserved, s.num_cuda_malloc);
    }
    fmt::print("  ops with gradcheck cases: {}\n", fmt::join(kOpNames, ", "));
    return 0;
}

constexpr const char* kInfoUsage = R"(usage: mambagrad info [--config FILE] [--KEY VALUE ...] [--json]
       mambagrad info --checkpoint FILE.safetensors [--json]

Without arguments: the build, devices, CPU GEMM and CUDA allocator. With a model (the config flags
of `mambagrad train`, e.g. --model.preset 130m --model.global_selection.enabled true, or a
checkpoint): the parameter table (mamba_ssm names, shapes, counts, dtypes), the totals with and
without global selection (lm_head tied to the embedding) and the bytes in fp32; --json prints the
same as one JSON object.
)";

int cmd_model_info(const std::vector<std::string>& args) {
    std::string checkpoint;
    bool as_json = false;
    std::vector<std::string> config_args;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--help" || args[i] == "-h") {
            fmt::print("{}", kInfoUsage);
            return 0;
        }
        if (args[i] == "--json") as_json = true;
        else if (args[i] == "--checkpoint") {
            MG_CHECK(i + 1 < args.size(), "info: --checkpoint needs a file");
            checkpoint = args[++i];
        } else if (args[i].starts_with("--checkpoint=")) checkpoint = args[i].substr(13);
        else config_args.push_back(args[i]);
    }
    if (checkpoint.empty() && config_args.empty()) {
        MG_CHECK(!as_json, "info: --json needs a model (--config, --model.KEY VALUE or --checkpoint)");
        return cmd_info();
    }
    MG_CHECK(checkpoint.empty() || config_args.empty(),
             "info: --checkpoint takes no config flags (got {}); the model is the checkpoint's",
             fmt::join(config_args, " "));
    train::ModelInfo m = checkpoint.empty() ? train::model_info(train::parse_train_args(config_args).model)
                                            : train::model_info_from_checkpoint(checkpoint);
    fmt::print("{}", as_json ? train::model_info_json(m).dump(2) + "\n" : train::format_model_info(m));
    return 0;
}

int cmd_gradcheck(const std::string& op, const std::string& device_str, bool list) {
    if (list) {
        for (const OpCase& c : op_cases()) fmt::print("{:<20} {}\n", c.op, c.label);
        return 0;
    }
    MG_CHECK(!op.empty(), "gradcheck: --op is required; known ops: {}", fmt::join(kOpNames, ", "));
    Device dev = Device::parse(device_str);
    MG_CHECK(dev.is_cpu() || dev.index < cuda_device_count(),
             "gradcheck: --device {}: {} CUDA device(s) are visible{}", device_str, cuda_device_count(),
             cuda_compiled() ? "" : " (this build has no CUDA)");
    int failed = 0;
    for (const OpCase* c : op_cases_for(op)) {
        Generator gen(0xC0FFEE);
        auto inputs = c->inputs({DType::f64, dev}, gen);
        for (Tensor& t : inputs)
            if (is_floating(t.dtype())) t.set_requires_grad(true); // not ids / targets
        auto r = gradcheck(c->fn, inputs);
        if (r.ok) fmt::print("ok    {} [{}] on {}: {} elements, max |diff| {:.2e}\n", op, c->label, dev.str(),
                             r.num_checked, r.max_abs_error);
        else {
            fmt::print("FAIL  {} [{}] on {}: {}\n", op, c->label, dev.str(), r.message);
            ++failed;
        }
    }
    return failed == 0 ? 0 : 1;
}

constexpr const char* kTrainUsage = R"(usage: mambagrad train [--config FILE] [--KEY VALUE | --KEY=VALUE ...]

Trains a MambaLM on MQAR, then scores the test split of every task.test_variants; with
task.kind lm (e.g. --config configs/lm_kjv.json) a byte-level language model instead, then
reports the test split's bits per byte and prints a sample.
Without --config the defaults below are used (or the checkpoint's config with --resume); each
--KEY VALUE then sets one dotted key; VALUE is read as JSON when it parses (numbers, true,
[[64,4]]) and as a string otherwise. Defaults:
)";

int cmd_train(const std::vector<std::string>& args) {
    for (const std::string& a : args)
        if (a == "--help" || a == "-h") {
            auto defaults = train::TrainConfig{}.to_json();
            defaults["model"] = nlohmann::ordered_json::parse(train::default_model_json().dump());
            fmt::print("{}{}\n", kTrainUsage, defaults.dump(2));
            return 0;
        }
    train::TrainConfig cfg = train::parse_train_args(args);
    train::Trainer trainer(cfg, stdout);
    trainer.train();
    if (cfg.task.is_lm()) {
        fmt::print("{}", trainer.test_table());
        train::GenerateOptions o;
        o.max_new_tokens = 200;
        o.temperature = 0.8;
        fmt::print("sample (temperature {}, seed {}):\n{}\n", o.temperature, o.seed,
                   data::decode_bytes(train::generate_ids(trainer.model(), {}, o)));
    } else if (!cfg.task.test_variants.empty()) {
        fmt::print("\n{}", trainer.test_table());
    }
    return 0;
}

constexpr const char* kProbeUsage = R"(usage: mambagrad probe --checkpoint FILE.safetensors [--KEY VALUE ...] [options]
       mambagrad probe [--config FILE] [--KEY VALUE ...] [options]

One forward and backward on a training batch of a checkpoint's model (or of a fresh model built
from the config flags of `mambagrad train`, with its seed; with a checkpoint the flags change its
config, e.g. --model.global_selection.mode fft): the loss, every parameter's gradient
norm, and per layer what the mixer computed (dt, the global-selection gate silu(g), delta and the
decay exp(delta A) of the slowest state). tools/torch_reference.py checks the --out file against
an independent PyTorch float64 implementation. Options:
  --batch N        examples in the batch (default 4)
  --seq_len L      their length, one of task.grid's (default: the longest)
  --dtype T        f32 (as trained) or f64 (default f32)
  --device D       auto, cpu, cuda or cuda:N (default auto)
  --out FILE       also write the batch, the loss and the gradients (safetensors)
)";

int cmd_probe(const std::vector<std::string>& args) {
    std::string checkpoint, out, device = "auto", dtype = "f32";
    train::ProbeOptions o;
    std::vector<std::string> config_args;
    auto value = [&](size_t& i) -> std::string {
        MG_CHECK(i + 1 < args.size(), "probe: {} needs a value", args[i]);
        return args[++i];
    };
    auto integer = [&](size_t& i) -> int64_t {
        const std::string flag = args[i], v = value(i);
        try {
            size_t used = 0;
            const long long n = std::stoll(v, &used);
            if (used == v.size()) return n;
        } catch (const std::exception&) {
        }
        throw Error(fmt::format("probe: {} '{}' is not an integer", flag, v.substr(0, 40)));
    };
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--help" || a == "-h") {
            fmt::print("{}", kProbeUsage);
            return 0;
        }
        if (a == "--checkpoint") checkpoint = value(i);
        else if (a == "--out") out = value(i);
        else if (a == "--device") device = value(i);
        else if (a == "--dtype") dtype = value(i);
        else if (a == "--batch") o.batch = integer(i);
        else if (a == "--seq_len") o.seq_len = integer(i);
        else config_args.push_back(a);
    }
    MG_CHECK(dtype == "f32" || dtype == "f64", "probe: --dtype {}, expected f32 or f64", dtype.substr(0, 40));
    o.dtype = dtype == "f64" ? DType::f64 : DType::f32;
    // the checkpoint's config (or the defaults) with the flags applied, e.g. another
    // model.global_selection.mode for the same weights
    std::vector<std::string> a = config_args;
    if (!checkpoint.empty()) a.insert(a.begin(), {"--resume", checkpoint});
    a.insert(a.end(), {"--device", device});
    train::LoadedModel m;
    m.config = train::parse_train_args(a);
    m.config.resume.clear();
    if (!checkpoint.empty()) {
        m = train::load_model(checkpoint, m.config);
    } else {
        Generator gen(m.config.seed);
        m.model = std::make_unique<nn::MambaLM>(m.config.model, Options{DType::f32, m.config.resolved_device()}, gen);
    }
    train::ProbeResult r = train::probe_model(*m.model, m.config, o);
    fmt::print("{} on {} in {} (step {}):\n{}", checkpoint.empty() ? "a fresh model" : checkpoint,
               m.config.resolved_device().str(), dtype, m.state.step, train::format_probe(r));
    if (!out.empty()) {
        train::save_probe(out, r, m.config);
        fmt::print("wrote {}\n", out);
    }
    return 0;
}

// The config of a checkpoint that must be a language model (`what` names the command).
nlohmann::json lm_checkpoint_config(const std::string& checkpoint, const char* what) {
    nlohmann::json j = train::checkpoint_config(checkpoint);
    const std::string kind = j.contains("task") ? j["task"].value("kind", std::string("mqar")) : "mqar";
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
    const data::TextSplits text = data::load_text_corpus(task.corpus, task.valid_fraction, task.test_fraction).splits;
    const std::vector<int32_t>& tokens = split == data::Split::Train   ? text.train
                                         : split == data::Split::Valid ? text.valid
                                                                       : text.test;
    MG_CHECK(!tokens.empty(), "eval: the {} split of '{}' is empty (task.{}_fraction is 0 in this checkpoint)",
             data::split_name(split), task.corpus, data::split_name(split));
    train::EvalResult r = train::evaluate_lm(*m.model, tokens, task.seq_len, m.config.batch_size);
    fmt::print("{} split of {} (seq_len {}), checkpoint {} (step {}): {}\n", data::split_name(split), task.corpus,
               task.seq_len, checkpoint, m.state.step, train::format_lm_result(r));
    return 0;
}

int cmd_generate(const std::string& checkpoint, const std::string& prompt, const train::GenerateOptions& o,
                 const std::string& device) {
    train::validate(o);
    nlohmann::json j = lm_checkpoint_config(checkpoint, "generate");
    j["device"] = device;
    train::LoadedModel m = train::load_model(checkpoint, train::TrainConfig::from_json(j));
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    train::generate_ids(*m.model, data::encode_bytes(prompt), o, [](int32_t id) {
        std::fputc(id, stdout);
        std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    return 0;
}

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

int cmd_eval(const std::string& checkpoint, const std::string& variants, const std::string& grid,
             int64_t examples, const std::string& split_name, const std::string& device) {
    MG_CHECK(!checkpoint.empty(), "eval: --checkpoint is required");
    const data::Split split = data::parse_split(split_name);
    nlohmann::json j = train::checkpoint_config(checkpoint);
    MG_CHECK(!(j.contains("task") && j["task"].value("kind", std::string("mqar")) == "lm"),
             "eval: checkpoint '{}' is a language model (task.kind lm): --variant, --grid and --examples apply to "
             "MQAR checkpoints", checkpoint);
    j["device"] = device;
    if (!variants.empty()) j["task"]["test_variants"] = split_list(variants);
    if (!grid.empty()) train::apply_override(j, "task.grid", grid);
    if (examples > 0) j["task"][split == data::Split::Valid ? "valid_examples" : "test_examples"] = examples;
    train::LoadedModel m = train::load_model(checkpoint, train::TrainConfig::from_json(j));
    const train::TaskConfig& task = m.config.task;
    std::vector<std::pair<std::string, data::MqarScore>> cols;
    for (data::MqarVariant v : task.test_variants) {
        const int64_t n = split == data::Split::Test    ? task.test_examples
                          : split == data::Split::Valid ? task.valid_examples
                                                        : task.train_examples;
        cols.emplace_back(std::string(data::variant_name(v)),
                          train::evaluate_mqar(*m.model, task.generate(v, split, n).examples, m.config.batch_size).score);
    }
    fmt::print("{}", train::format_score_table(
                         cols, fmt::format("query accuracy (%) on the {} split; checkpoint {} (step {}, trained on {})",
                                           data::split_name(split), checkpoint, m.state.step,
                                           data::variant_name(task.variant))));
    return 0;
}

int cmd_plot(const std::string& run_dir) {
    const train::RunPlots p = train::write_run_plots(run_dir);
    fmt::print("wrote {} from {} rows of {}/metrics.jsonl{}\n", fmt::join(p.files, ", "), p.rows, run_dir,
               p.skipped_lines ? fmt::format(" ({} lines that are not JSON objects skipped)", p.skipped_lines) : "");
    return 0;
}

int cmd_data(const std::string& config, const std::string& out, const std::map<std::string, std::string>& task_keys,
             int64_t examples, const std::string& split_name) {
    MG_CHECK(!out.empty(), "data: --out FILE is required");
    const data::Split split = data::parse_split(split_name);
    nlohmann::json j = nlohmann::json::object();
    if (!config.empty()) j = train::parse_train_args({"--config", config}).to_json();
    for (const auto& [k, v] : task_keys) train::apply_override(j, "task." + k, v);
    j["model"] = train::default_model_json(); // the data need no model; "auto" fits any task
    const train::TaskConfig task = train::TrainConfig::from_json(j).task;
    MG_CHECK(!task.is_lm(), "data: writes MQAR datasets; the config's task.kind is lm (its corpus is the data)");
    const int64_t n = examples > 0                      ? examples
                      : split == data::Split::Train     ? task.train_examples
                      : split == data::Split::Valid     ? task.valid_examples
                                                        : task.test_examples;
    data::MqarGridData d = task.generate(task.variant, split, n);
    data::save_jsonl(out, d.examples);
    fmt::print("wrote {} examples of MQAR {} ({} split) to {}\n", d.examples.size(), data::variant_name(task.variant),
               data::split_name(split), out);
    for (const auto& [L, N] : d.skipped) fmt::print("skipped cell {}x{}: it cannot hold this variant\n", L, N);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"mambagrad: tensors, autograd and Mamba kernels on CPU and CUDA"};
    app.require_subcommand(1);
    // train, info and probe parse their own arguments (config keys as flags: train --help); they
    // are listed here so that `mambagrad --help` names every command
    app.add_subcommand("train", "train a model on MQAR or a byte-level LM, then score it (train --help lists every "
                                "config key)");
    app.add_subcommand("info", "build configuration, devices and memory; a model's parameter table (info --help)");
    std::string op, device = "cpu";
    bool list = false;
    auto* gc = app.add_subcommand("gradcheck", "finite-difference gradient check of an op (f64)");
    gc->add_option("--op", op, "op name (see --list)");
    gc->add_option("--device", device, "cpu, cuda or cuda:N");
    gc->add_flag("--list", list, "list the ops and their cases");

    std::string checkpoint, variants, grid, eval_split = "test", eval_device = "auto";
    int64_t eval_examples = 0;
    std::string eval_corpus;
    auto* ev = app.add_subcommand("eval", "score a checkpoint: MQAR variants (per-subtask query accuracy) or an LM "
                                          "split (loss, bits per byte, perplexity)");
    ev->add_option("--checkpoint", checkpoint, "a checkpoint written by `mambagrad train`")->required();
    ev->add_option("--variant", variants, "comma-separated variants (default: the run's test_variants), e.g. "
                                          "standard,last,shuffle");
    ev->add_option("--grid", grid, "cells LxN, e.g. 64x4,128x8, or zoology / paper (default: the run's grid)");
    ev->add_option("--examples", eval_examples, "examples per cell (default: the run's)");
    ev->add_option("--split", eval_split, "test, valid or train");
    ev->add_option("--device", eval_device, "auto, cpu, cuda or cuda:N");
    ev->add_option("--corpus", eval_corpus, "LM checkpoints: score this text file instead of the run's task.corpus");

    std::string gen_checkpoint, gen_prompt, gen_device = "auto";
    train::GenerateOptions gen;
    auto* ge = app.add_subcommand("generate", "sample text from a language-model checkpoint (recurrent mode)");
    ge->add_option("--checkpoint", gen_checkpoint, "a checkpoint of a task.kind lm run")->required();
    ge->add_option("--prompt", gen_prompt, "text the sample continues (default: none, the text's start)");
    ge->add_option("--max_new_tokens", gen.max_new_tokens, "bytes to draw at most (stops early at EOS)");
    ge->add_option("--temperature", gen.temperature, "softmax temperature; 0: greedy (argmax)");
    ge->add_option("--top_k", gen.top_k, "draw among the k most likely tokens only (0: all)");
    ge->add_option("--seed", gen.seed, "the sampling seed: the same seed gives the same text");
    ge->add_option("--device", gen_device, "auto, cpu, cuda or cuda:N");

    std::string data_config, data_out, data_split = "train";
    int64_t data_examples = 0;
    std::map<std::string, std::string> task_keys;
    auto* da = app.add_subcommand("data", "write a generated MQAR dataset as JSONL (the paper's format)");
    da->add_option("--out", data_out, "output JSONL file")->required();
    da->add_option("--config", data_config, "take the task from a training config");
    for (const char* key : {"variant", "grid", "vocab_size", "seed", "noise", "binding"})
        da->add_option(std::string("--") + key, task_keys[key], std::string("task.") + key + " (see `mambagrad train --help`)");
    da->add_option("--examples", data_examples, "examples per cell (default: the task's for the split)");
    da->add_option("--split", data_split, "train, valid or test (the seed base and the training-only labels)");

    std::string plot_dir;
    auto* pl = app.add_subcommand("plot", "write loss and accuracy charts (PNG and SVG) of a run from its metrics.jsonl");
    pl->add_option("RUN_DIR", plot_dir, "a run directory of `mambagrad train`")->required();

    app.add_subcommand("probe", "one batch through a model: loss, gradient norms, what each layer computed "
                                "(probe --help)");
    const std::set<std::string> commands = {"info", "gradcheck", "train", "eval", "generate", "data", "plot", "probe"};
    if (argc > 1 && argv[1][0] != '-' && !commands.count(argv[1])) {
        fmt::print(stderr, "error: unknown command '{}'; expected one of: info, gradcheck, train, eval, generate, "
                   "data, plot, probe\n", argv[1]);
        return 2;
    }
    try {
        if (argc > 1 && std::string(argv[1]) == "train") return cmd_train(std::vector<std::string>(argv + 2, argv + argc));
        if (argc > 1 && std::string(argv[1]) == "info") return cmd_model_info(std::vector<std::string>(argv + 2, argv + argc));
        if (argc > 1 && std::string(argv[1]) == "probe") return cmd_probe(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const mg::Error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: internal: {}\n", e.what());
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        fmt::print(stderr, "error: {} (run `mambagrad --help`)\n", e.what());
        return 2;
    }
    try {
        if (*gc) return cmd_gradcheck(op, device, list);
        if (*pl) return cmd_plot(plot_dir);
        // a count the user gave is a count: 0 or less is refused, not replaced by the default
        MG_CHECK(!ev->count("--examples") || eval_examples >= 1, "eval: --examples is {}, expected >= 1", eval_examples);
        MG_CHECK(!da->count("--examples") || data_examples >= 1, "data: --examples is {}, expected >= 1", data_examples);
        if (*ev) {
            const nlohmann::json j = train::checkpoint_config(checkpoint);
            if (j.contains("task") && j["task"].value("kind", std::string("mqar")) == "lm" && !ev->count("--variant") &&
                !ev->count("--grid") && !ev->count("--examples"))
                return cmd_eval_lm(checkpoint, ev->count("--split") ? eval_split : "valid", eval_corpus, eval_device);
            MG_CHECK(eval_corpus.empty(), "eval: --corpus applies to language-model checkpoints; '{}' is MQAR",
                     checkpoint);
            return cmd_eval(checkpoint, variants, grid, eval_examples, eval_split, eval_device);
        }
        if (*ge) return cmd_generate(gen_checkpoint, gen_prompt, gen, gen_device);
        if (*da) {
            std::map<std::string, std::string> given;
            for (const auto& [k, v] : task_keys)
                if (da->count("--" + k)) given[k] = v;
            return cmd_data(data_config, data_out, given, data_examples, data_split);
        }
    } catch (const mg::Error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: internal: {}\n", e.what());
        return 2;
    }
    return 0;
}
