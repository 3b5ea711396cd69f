// train/cli.cpp: the `mambagrad` program: one parser (train/command_line.h) for every command;
// `mambagrad --help` lists them and `mambagrad COMMAND --help` shows each one's options.
//
//   mambagrad info [--checkpoint F | --config F --KEY VALUE ...] [--json]   build, devices; a model's parameters
//   mambagrad gradcheck --op matmul [--device cuda] | --list
//   mambagrad train [--config F] [--KEY VALUE ...]        (train/config.h lists the keys)
//   mambagrad eval --checkpoint F [--variant ...] [--grid ...] [--split ...] [--corpus F]
//   mambagrad generate --checkpoint F|DIR [--prompt TEXT] [--max_new_tokens N] [--temperature T] ...
//   mambagrad convert --from hf DIR --out F.safetensors | --to hf CHECKPOINT --out DIR
//   mambagrad plot RUN_DIR                  loss/accuracy charts (PNG + SVG) from metrics.jsonl
//   mambagrad probe [--checkpoint F] [--KEY VALUE ...] [--batch N] [--dtype f64] [--out F]
//   mambagrad data --out F.jsonl [--variant ...] [--grid ...] [--examples N] [--split train]
//
// Every failure prints one `error: ...` line to stderr and exits with status 2. The eval and
// generate commands are in train/cli_eval.cpp.
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <filesystem>
#include <functional>

#include "data/atomic_file.h"
#include "mambagrad.h"
#include "ops/op_table.h"
#include "tensor/json.h"
#include "tensor/runtime.h"
#include "train/build_info.h"
#include "train/cli_eval.h"
#include "train/command_line.h"
#include "train/generate.h"
#include "train/info.h"
#include "train/model.h"
#include "train/plot.h"
#include "train/convert.h"
#include "train/distributed.h"
#include "train/process.h"
#include "train/pretrained.h"
#include "train/report.h"
#include "train/sweep.h"
#include "train/probe.h"
#include "train/trainer.h"

using namespace mg;
using train::CommandLine;

namespace {

int cmd_info() {
    fmt::print("mambagrad (commit {})\n", train::build_commit());
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

int cmd_info_args(const std::vector<std::string>& args) {
    std::string checkpoint;
    bool as_json = false;
    std::vector<std::string> config_args;
    CommandLine cl("info", "info [--checkpoint FILE | --config FILE --KEY VALUE ...] [--json]",
                   "Without a model: the build, the devices, the CPU GEMM and the CUDA allocator. With a model (a\n"
                   "checkpoint, or the config keys of `mambagrad train`, e.g. --model.preset 130m): its parameter\n"
                   "table (mamba_ssm names, shapes, counts), the totals with and without global selection and the\n"
                   "bytes in fp32.");
    cl.option("--checkpoint", "FILE", checkpoint, "a checkpoint: its model's table")
        .flag("--json", as_json, "the table as one JSON object")
        .config_keys(config_args);
    if (!cl.parse(args)) return 0;
    if (checkpoint.empty() && config_args.empty()) {
        MG_CHECK(!as_json, "info: --json needs a model (--config, --model.KEY VALUE or --checkpoint)");
        return cmd_info();
    }
    MG_CHECK(checkpoint.empty() || config_args.empty(),
             "info: --checkpoint takes no config keys (got {}); the model is the checkpoint's",
             fmt::join(config_args, " "));
    train::ModelInfo m = checkpoint.empty() ? train::model_info(train::parse_train_args(config_args))
                                            : train::model_info_from_checkpoint(checkpoint);
    fmt::print("{}", as_json ? train::model_info_json(m).dump(2) + "\n" : train::format_model_info(m));
    return 0;
}

int cmd_gradcheck_run(const std::string& op, const std::string& device_str, bool list) {
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
            if (is_differentiable(t.dtype())) t.set_requires_grad(true); // not ids / targets
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

int cmd_gradcheck(const std::vector<std::string>& args) {
    std::string op, device = "cpu";
    bool list = false;
    CommandLine cl("gradcheck", "gradcheck --op NAME [--device DEV] | --list",
                   "Finite-difference gradient check (f64) of every op-table case of an op: prints each case's\n"
                   "largest difference, or which element of which input is wrong. Exit status 1 when one fails.");
    cl.option("--op", "NAME", op, "the op (see --list)")
        .option("--device", "DEV", device, "cpu, cuda or cuda:N", "cpu")
        .flag("--list", list, "list the ops and their cases");
    if (!cl.parse(args)) return 0;
    return cmd_gradcheck_run(op, device, list);
}

int cmd_train(const std::vector<std::string>& args) {
    std::vector<std::string> config_args;
    CommandLine cl("train", "train [--config FILE] [--KEY VALUE | --KEY=VALUE ...]",
                   "Trains a MambaLM on MQAR, then scores the test split of every task.test_variants; with\n"
                   "task.kind lm (e.g. --config configs/lm_kjv.json) a byte-level language model instead, then\n"
                   "reports the test split's bits per byte and prints a sample. Without --config the defaults\n"
                   "below are used (or the checkpoint's config with --resume); each --KEY VALUE then sets one key.");
    int64_t ranks = 1;
    cl.option("--ranks", "N", ranks, "data parallel: N processes on this machine, each on its rows of every batch "
              "(train/distributed.h); the result is the single-process run's", "1")
        .config_keys(config_args);
    if (!cl.parse(args)) return 0;
    MG_CHECK(ranks >= 1 && ranks <= 256, "train: --ranks is {}, expected an integer in [1, 256]", ranks);
    train::TrainConfig cfg = train::parse_train_args(config_args);
    std::unique_ptr<train::Communicator> comm = train::communicator_from_env();
    if (!comm && ranks > 1) { // the launcher: the config is checked here once, before any rank starts
        MG_CHECK(cfg.batch_size >= ranks, "train --ranks {}: batch_size is {}, fewer rows than ranks", ranks,
                 cfg.batch_size);
        std::vector<std::string> rank_args = {"train"};
        rank_args.insert(rank_args.end(), args.begin(), args.end());
        return train::launch_ranks(train::self_program(), rank_args, int(ranks));
    }
    if (comm)
        MG_CHECK(comm->world() == ranks, "train: rank {} of {} was started with --ranks {}", comm->rank(),
                 comm->world(), ranks);
    const bool rank0 = !comm || comm->rank() == 0;
    train::Trainer trainer(cfg, stdout, comm.get());
    trainer.train();
    // every rank scores its share of the test split (sharded evaluation); rank 0 alone prints
    const std::string table = trainer.test_table();
    if (!rank0) return 0;
    if (cfg.task.is_lm()) {
        fmt::print("{}", table);
        train::GenerateOptions o;
        o.max_new_tokens = 200;
        o.temperature = 0.8;
        const data::Tokenizer& tok = *trainer.tokenizer();
        if (tok.begin) // a sample from the text's start (a tokenizer without a start token has none)
            fmt::print("sample (temperature {}, seed {}):\n{}\n", o.temperature, o.seed,
                       tok.decode(train::generate_ids(trainer.model(), tok, {}, o)));
    } else if (!cfg.task.test_variants.empty()) {
        fmt::print("\n{}", table);
    }
    return 0;
}

int cmd_probe(const std::vector<std::string>& args) {
    std::string checkpoint, out, device = "auto", dtype = "f32";
    train::ProbeOptions o;
    std::vector<std::string> config_args;
    CommandLine cl("probe", "probe [--checkpoint FILE] [--KEY VALUE ...] [options]",
                   "One forward and backward on a training batch of a checkpoint's model (or of a fresh model built\n"
                   "from the config keys, with its seed; with a checkpoint the keys change its config, e.g.\n"
                   "--model.global_selection.mode fft): the loss, every parameter's gradient norm, and per layer\n"
                   "what the mixer computed (dt, the global-selection gate, delta, the slowest state's decay).\n"
                   "tools/torch_reference.py checks an --out file against an independent PyTorch implementation.");
    cl.option("--checkpoint", "FILE", checkpoint, "the model to probe (default: a fresh one from the config)")
        .option("--batch", "N", o.batch, "examples in the batch", "4")
        .option("--seq_len", "N", o.seq_len, "their length, one of task.grid's (default: the longest)")
        .option("--dtype", "f32|f64", dtype, "the precision of the pass", "f32")
        .option("--device", "DEV", device, "auto, cpu, cuda or cuda:N", "auto")
        .option("--out", "FILE", out, "also write the batch, the loss and the gradients (safetensors)")
        .config_keys(config_args);
    if (!cl.parse(args)) return 0;
    MG_CHECK(dtype == "f32" || dtype == "f64", "probe: --dtype {}, expected f32 or f64", text_excerpt(dtype, 40));
    o.dtype = dtype == "f64" ? DType::f64 : DType::f32;
    // the checkpoint's config (or the defaults) with the keys applied, e.g. another
    // model.global_selection.mode for the same weights
    std::vector<std::string> a = config_args;
    if (!checkpoint.empty()) a.insert(a.begin(), {train::is_model_folder(checkpoint) ? "--init" : "--resume", checkpoint});
    a.insert(a.end(), {"--device", device});
    train::LoadedModel m;
    m.config = train::parse_train_args(a);
    m.config.resume.clear();
    if (!checkpoint.empty()) {
        m = train::load_model(checkpoint, m.config);
    } else {
        Generator gen(m.config.seed);
        m.model = train::make_model(m.config, Options{DType::f32, m.config.resolved_device()}, gen);
    }
    auto* mamba = dynamic_cast<nn::MambaLM*>(m.model.get());
    MG_CHECK(mamba, "probe: model.arch is {}; probe reads the Mamba mixer's dt, gate and state (model.arch mamba)",
             m.model->arch());
    train::ProbeResult r = train::probe_model(*mamba, m.config, o);
    fmt::print("{} on {} in {} (step {}):\n{}", checkpoint.empty() ? "a fresh model" : checkpoint,
               m.config.resolved_device().str(), dtype, m.state.step, train::format_probe(r));
    if (!out.empty()) {
        train::save_probe(out, r, m.config);
        fmt::print("wrote {}\n", out);
    }
    return 0;
}

// convert --from hf DIR --out FILE | --to hf CHECKPOINT --out DIR (train/convert.h).
int cmd_convert(const std::vector<std::string>& args) {
    std::string from, to, out;
    CommandLine cl("convert", "convert --from hf DIR --out FILE | --to hf CHECKPOINT --out DIR",
                   "Moves a Mamba between mambagrad and transformers' format (train/convert.h).\n"
                   "--from hf DIR: a transformers MambaForCausalLM folder (config.json, model.safetensors or\n"
                   "  its shards, tokenizer.json) becomes one mambagrad checkpoint (its config: the model, task lm\n"
                   "  with the folder's tokenizer). Any command also takes the folder itself as --checkpoint.\n"
                   "--to hf CHECKPOINT: a checkpoint (or folder) becomes a folder that\n"
                   "  MambaForCausalLM.from_pretrained loads, with the tokenizer when the model has one.");
    cl.option("--from", "hf DIR", from, "the folder to import (the word hf, then the folder)")
        .option("--to", "hf CHECKPOINT", to, "the checkpoint to export (the word hf, then the checkpoint)")
        .option("--out", "PATH", out, "the checkpoint file (--from) or the new folder (--to) to write")
        .required("--out");
    std::vector<std::string> rest;
    cl.positionals("hf-argument", rest, "the folder or checkpoint after --from hf / --to hf");
    if (!cl.parse(args)) return 0;
    MG_CHECK(from.empty() != to.empty(), "convert: give exactly one of --from hf DIR and --to hf CHECKPOINT");
    const std::string& format = from.empty() ? to : from;
    MG_CHECK(format == "hf" && rest.size() == 1, "convert: expected --{} hf PATH (the only format is hf: transformers' "
             "MambaForCausalLM), got --{} {}{}", from.empty() ? "to" : "from", from.empty() ? "to" : "from",
             text_excerpt(format, 40), rest.empty() ? "" : " " + text_excerpt(fmt::format("{}", fmt::join(rest, " ")), 60));
    const std::string& source = rest[0];
    if (!from.empty()) {
        const train::ImportedFolder r = train::import_model_folder(source, out);
        fmt::print("wrote {}: a {}-layer Mamba (d_model {}, vocab {}) from {} ({} layout){}\n", out, r.config.model.n_layer,
                   r.config.model.d_model, r.config.model.padded_vocab(), source, r.layout,
                   r.tokenizer.empty() ? "" : fmt::format(", tokenizer {}", r.tokenizer));
        return 0;
    }
    const train::ExportedFolder r = train::export_model_folder(source, out);
    fmt::print("wrote {}: config.json, model.safetensors, generation_config.json{} (load it with "
               "MambaForCausalLM.from_pretrained)\n", out, r.wrote_tokenizer ? ", tokenizer.json" : "");
    return 0;
}

int cmd_plot_run(const std::string& run_dir) {
    const train::RunPlots p = train::write_run_plots(run_dir);
    MG_CHECK(p.skipped.empty(), "plot: cannot draw: {}", p.skipped);
    fmt::print("wrote {} from {} rows of {}/metrics.jsonl{}\n", fmt::join(p.files, ", "), p.rows, run_dir,
               p.skipped_lines ? fmt::format(" ({} lines that are not JSON objects skipped)", p.skipped_lines) : "");
    return 0;
}

int cmd_plot(const std::vector<std::string>& args) {
    std::string run_dir;
    CommandLine cl("plot", "plot RUN_DIR", "Writes a run's loss and accuracy charts (PNG and SVG, drawn with cairo) from its metrics.jsonl.");
    cl.positional("RUN_DIR", run_dir, "a run directory of `mambagrad train`");
    if (!cl.parse(args)) return 0;
    return cmd_plot_run(run_dir);
}

int cmd_data(const std::vector<std::string>& args) {
    std::string out, split_name = "train";
    int64_t examples = 0;
    std::vector<std::string> task_args;
    CommandLine cl("data", "data --out FILE [--config FILE] [--KEY VALUE ...] [--examples N] [--split NAME]",
                   "Writes a generated MQAR dataset as JSONL (the paper's format): the task's variant over its\n"
                   "grid, for one split.");
    cl.option("--out", "FILE", out, "the JSONL file to write")
        .required("--out")
        .option("--examples", "N", examples, "examples per cell (default: the task's for the split)")
        .option("--split", "NAME", split_name, "train, valid or test (the seed base and the training-only labels)",
                "train")
        .config_keys(task_args, "task.");
    if (!cl.parse(args)) return 0;
    MG_CHECK(!cl.given("--examples") || examples >= 1, "data: --examples is {}, expected >= 1", examples);
    const data::Split split = data::parse_split(split_name);
    task_args.insert(task_args.end(), {"--model", train::default_model_json().dump()}); // "auto" fits any task
    const train::TaskConfig task = train::parse_train_args(task_args).task;
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

struct Command {
    const char* name;
    const char* summary;
    int (*run)(const std::vector<std::string>&);
};
int cmd_sweep(const std::vector<std::string>& args) {
    std::string file;
    train::SweepOptions o;
    CommandLine cl("sweep", "sweep EXPERIMENT.json [--jobs N] [--dry-run] [--runs DIR] [--results DIR]",
                   "Runs an experiment: the grid of training runs its file describes (train/sweep.h), each a\n"
                   "`mambagrad train` process, several at once, and appends one result row per finished run to\n"
                   "experiments/results/<name>.jsonl. Runs already recorded are skipped and interrupted runs go on\n"
                   "from their newest checkpoint, so the same command continues a sweep in a later sitting.");
    cl.positional("EXPERIMENT", file, "the experiment file (e.g. experiments/positional.json)")
        .option("--jobs", "N", o.jobs, "runs at once (default: the file's \"jobs\", else 1)")
        .flag("--dry-run", o.dry_run, "list the runs left and whether each starts or resumes; run nothing")
        .option("--runs", "DIR", o.runs_root, "where the runs' directories go", "runs/sweeps")
        .option("--results", "DIR", o.results_dir, "where the results file goes (default: results/ beside the file)");
    if (!cl.parse(args)) return 0;
    MG_CHECK(!cl.given("--jobs") || (o.jobs >= 1 && o.jobs <= 64), "sweep: --jobs is {}, expected 1 to 64", o.jobs);
    const train::SweepSummary s = train::run_sweep(train::SweepSpec::load(file), o, stdout);
    if (s.interrupted) return 130;
    return s.failed > 0 ? 1 : 0;
}

int cmd_report(const std::vector<std::string>& args) {
    std::string out, results_dir;
    CommandLine cl("report", "report EXPERIMENT [EXPERIMENT ...] [--out FILE]",
                   "Renders experiments from their result rows alone (train/report.h): per experiment a table of\n"
                   "test accuracy per group of runs (mean ± standard deviation over seeds, the paper's numbers\n"
                   "beside), and each group's accuracy per (L, N) cell. EXPERIMENT is an experiment file\n"
                   "(experiments/positional.json, or without .json); its rows are in results/<name>.jsonl beside it.\n"
                   "With --out the whole document is written there (docs/RESULTS.md: `make results`) and its\n"
                   "images (heatmaps per cell, validation curves; PNG via cairo) into results/ beside it.");
    std::vector<std::string> files;
    cl.positionals("EXPERIMENT", files, "experiment files")
        .option("--out", "FILE", out, "write the document (title, then every experiment) to FILE, atomically")
        .option("--results", "DIR", results_dir, "where the results files are (default: results/ beside each file)");
    if (!cl.parse(args)) return 0;
    for (std::string& f : files)
        if (!std::filesystem::exists(f) && std::filesystem::exists(f + ".json")) f += ".json";
    if (!out.empty()) {
        // the images beside the document, in results/ (the markdown links them there)
        const std::string images = (std::filesystem::path(out).parent_path() / "results").string();
        data::write_file_atomic(out, train::results_document(files, results_dir, images));
        fmt::print("wrote {} ({} experiment{})\n", out, files.size(), files.size() == 1 ? "" : "s");
        return 0;
    }
    for (const std::string& f : files) {
        const train::SweepSpec spec = train::SweepSpec::load(f);
        fmt::print("{}", train::experiment_report(spec, train::read_result_rows(train::sweep_results_path(spec, results_dir))));
    }
    return 0;
}

const Command kCommands[] = {
    {"train", "train a model on MQAR or a language model, then score it", cmd_train},
    {"sweep", "run an experiment's grid of training runs, resumably, several at once", cmd_sweep},
    {"report", "an experiment's results as markdown tables, beside the paper's numbers", cmd_report},
    {"eval", "score a checkpoint: MQAR variants or an LM split", train::cmd_eval},
    {"generate", "sample text from a language-model checkpoint or model folder", train::cmd_generate},
    {"convert", "a Mamba to and from transformers' format (MambaForCausalLM folders)", cmd_convert},
    {"probe", "one batch through a model: loss, gradient norms, what each layer computed", cmd_probe},
    {"plot", "a run's loss and accuracy charts (PNG, SVG)", cmd_plot},
    {"data", "write a generated MQAR dataset as JSONL", cmd_data},
    {"info", "the build, devices and memory; a model's parameter table", cmd_info_args},
    {"gradcheck", "finite-difference gradient check of an op (f64)", cmd_gradcheck},
};

std::string program_help() {
    std::string out = "usage: mambagrad COMMAND [options]   (mambagrad COMMAND --help: its options)\n\n"
                      "mambagrad: tensors, autograd and Mamba kernels on CPU and CUDA.\n\ncommands:\n";
    for (const Command& c : kCommands) out += fmt::format("  {:<12} {}\n", c.name, c.summary);
    return out;
}

} // namespace

// "[rank R] " in a rank of a data-parallel run (train --ranks), else "".
std::string rank_prefix() {
    const char* r = std::getenv("MG_RANK");
    return r ? fmt::format("[rank {}] ", text_excerpt(r, 8)) : "";
}

int main(int argc, char** argv) {
    const std::vector<std::string> all(argv + 1, argv + argc);
    if (!all.empty() && (all[0] == "--help" || all[0] == "-h")) {
        std::fputs(program_help().c_str(), stdout);
        return 0;
    }
    try {
        if (all.empty()) throw Error("no command given (see `mambagrad --help`)");
        for (const Command& c : kCommands)
            if (all[0] == c.name) return c.run(std::vector<std::string>(all.begin() + 1, all.end()));
        std::vector<std::string> names;
        for (const Command& c : kCommands) names.push_back(c.name);
        throw Error(fmt::format("unknown command '{}'; expected one of: {} (see `mambagrad --help`)",
                                text_excerpt(all[0], 40), fmt::join(names, ", ")));
    } catch (const train::Interrupted& e) {
        // (a data-parallel run: rank 0 says where the checkpoint is; the others saved nothing)
        if (!rank_prefix().empty() && rank_prefix() != "[rank 0] ") return 128 + e.signal;
        fmt::print(stderr, "{}\n", e.what());
        return 128 + e.signal; // the shell's convention for a run ended by that signal
    } catch (const mg::Error& e) {
        fmt::print(stderr, "error: {}{}\n", rank_prefix(), e.what());
        return 2;
    } catch (const std::bad_alloc&) {
        // An allocation no check foresaw (the data generators check their estimates first).
        fmt::print(stderr, "error: {}: out of host memory (this machine has {}); ask for less (fewer examples, a "
                           "smaller model or batch)\n",
                   all.empty() ? std::string("mambagrad") : text_excerpt(all[0], 40), format_bytes(double(host_memory_bytes())));
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: internal: {}\n", e.what());
        return 2;
    }
}
