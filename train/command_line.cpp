// train/command_line.cpp: see train/command_line.h.
#include "train/command_line.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "tensor/error.h"
#include "tensor/json.h"
#include "train/config.h"

namespace mg::train {

// ---- the config keys --------------------------------------------------------------------------
// One line each in --help; train/config.h has the longer story. Kept in step with
// TrainConfig::from_json by tests/test_cli.cpp (every key it reads has an entry, and no more).
const std::vector<ConfigKeyDoc>& config_key_docs() {
    static const std::vector<ConfigKeyDoc> docs = {
        {"model.arch", "text", "mamba, or transformer (GPT-NeoX/Pythia; the keys marked transformer)"},
        {"model.preset", "text", "mamba: zoology (2 layers), tiny (the paper's) or 130m; transformer: zoology, pythia-70m, pythia-160m"},
        {"model.d_model", "int", "the residual width"},
        {"model.n_layer", "int", "blocks (Mamba) or layers (transformer)"},
        {"model.vocab_size", "int|auto", "embedding rows; auto: the smallest that holds the task's tokens"},
        {"model.pad_vocab_size_multiple", "int", "the vocabulary is padded up to a multiple of this"},
        {"model.d_state", "int", "N, the SSM state size per channel"},
        {"model.d_conv", "int", "the short conv's kernel length"},
        {"model.expand", "int", "d_inner = expand * d_model"},
        {"model.dt_rank", "int|auto", "the rank of dt_proj; auto: ceil(d_model / 16)"},
        {"model.norm_eps", "num", "RMSNorm's epsilon"},
        {"model.init", "text", "mamba (mamba_ssm's init) or paper-code (the authors' repository)"},
        {"model.global_selection", "object", "the global-selection gate on delta, all keys below at once"},
        {"model.global_selection.enabled", "bool", "gate delta with f(long_conv(x)) (the paper's fix)"},
        {"model.global_selection.kind", "text", "longconv (explicit kernel) or flashlongconv (the authors' variant)"},
        {"model.global_selection.k_long", "int", "the long conv's kernel length"},
        {"model.global_selection.layers", "list|all", "the layers that get the gate"},
        {"model.global_selection.mode", "text", "auto, direct or fft: how the long conv is computed"},
        {"model.global_selection.gate", "text", "sigmoid (bounded, the default) or silu (the authors' code)"},
        {"model.global_selection.gate_input", "text", "raw (the authors'), normalized (RMS over channels) or detached"},
        {"model.n_head", "int", "transformer: attention heads (d_model / n_head per head)"},
        {"model.d_ff", "int", "transformer: the MLP's width; 0: 4 d_model"},
        {"model.rotary_pct", "num", "transformer: the share of each head's dims that rotate (RoPE)"},
        {"model.rotary_base", "num", "transformer: RoPE's base"},
        {"model.layer_norm_eps", "num", "transformer: LayerNorm's epsilon"},
        {"model.init_std", "num", "transformer: the std of the normal init of weights and embeddings"},
        {"task.kind", "text", "mqar (associative recall) or lm (language modelling)"},
        {"task.variant", "text", "the MQAR variant trained on: standard, last, shuffle, ... (SPEC §4)"},
        {"task.grid", "list|text", "(L, N) cells: [[64,4],[128,8]], \"64x4,128x8\", zoology or paper"},
        {"task.train_examples", "int", "training examples per cell"},
        {"task.valid_examples", "int", "validation examples per cell"},
        {"task.test_examples", "int", "test examples per cell"},
        {"task.vocab_size", "int", "MQAR's key/value vocabulary W"},
        {"task.noise", "bool", "filler tokens between pairs and queries (the paper's)"},
        {"task.binding", "text", "pair (key then value) or first"},
        {"task.seed", "int|null", "data seed; null: the paper's per-split seeds"},
        {"task.test_variants", "list", "variants scored at the end (and on evaluation)"},
        {"task.corpus", "text", "lm: the text file"},
        {"task.seq_len", "int", "lm: tokens per training window"},
        {"task.valid_fraction", "num", "lm: the corpus share held out for validation"},
        {"task.test_fraction", "num", "lm: the corpus share held out for test"},
        {"task.eval_batches", "int", "lm: validation batches per evaluation (0: the whole split)"},
        {"task.tokenizer", "text", "lm: a tokenizer.json (byte-level BPE); \"\": bytes"},
        {"seed", "int", "the model's initialisation and the batch order"},
        {"batch_size", "int", "examples per forward/backward (micro-batch)"},
        {"grad_accum_steps", "int", "micro-batches per optimizer step"},
        {"epochs", "int", "passes over the training data"},
        {"max_steps", "int", "stop after this many optimizer steps instead (0: use epochs)"},
        {"shuffle", "bool", "a new example order every epoch"},
        {"lr", "num", "the peak learning rate"},
        {"betas", "list", "AdamW's [beta1, beta2]"},
        {"eps", "num", "AdamW's epsilon"},
        {"weight_decay", "num", "AdamW's decoupled weight decay"},
        {"no_decay", "text", "none (decay every parameter) or mamba_ssm (not A_log, D)"},
        {"lr_scale", "object", "lr multipliers by name component: {\"long_conv\": 0.1} (0 freezes)"},
        {"adamw", "text", "transformers (the paper's AdamW) or torch"},
        {"schedule", "text", "cosine or constant, after linear warmup"},
        {"warmup_fraction", "num", "the share of steps spent warming up"},
        {"min_lr", "num", "the cosine schedule's floor"},
        {"clip_value", "num", "clip each gradient element to [-c, c] (0: off)"},
        {"clip_norm", "num", "clip the global gradient norm (0: off)"},
        {"nan_guard", "bool", "stop, naming the tensor, at the first NaN/Inf gradient"},
        {"log_grad_norms", "bool", "every parameter's gradient norm in each metrics row"},
        {"eval_every", "int", "steps between evaluations (0: every epoch's end)"},
        {"log_every", "int", "steps between log lines and metrics rows"},
        {"target_accuracy", "num", "stop early at this validation accuracy (0: off; MQAR)"},
        {"device", "text", "auto, cpu, cuda or cuda:N"},
        {"precision", "text", "fp32 or tf32: f32 matmuls on the GPU in true fp32 or on tensor cores in TF32"},
        {"run_dir", "text", "where config.json, metrics.jsonl and checkpoints go (\"\": nowhere)"},
        {"checkpoint_every", "int", "steps between checkpoints (0: only the final one)"},
        {"keep_checkpoints", "int", "step checkpoints kept (the oldest are removed)"},
        {"resume", "text", "a checkpoint to continue from (its config, unless --config is given)"},
        {"init", "text", "a checkpoint or model folder whose weights start a new run (fine-tuning)"},
    };
    return docs;
}

namespace {

// The defaults of every config key: the MQAR run's, the LM task's keys, and the default model
// section (zoology, d_model 64, vocab auto) with the preset's resolved fields.
nlohmann::json config_defaults() {
    nlohmann::json j = TrainConfig{}.to_json();
    j["model"] = default_model_json();
    j["model"]["arch"] = "mamba";
    for (const nlohmann::json& model : {nlohmann::json(nn::MambaConfig::preset("zoology", 64).to_json()),
                                        nlohmann::json(nn::TransformerConfig::preset("zoology", 64).to_json())})
        for (auto it = model.begin(); it != model.end(); ++it)
            if (!j["model"].contains(it.key())) j["model"][it.key()] = it.value();
    TrainConfig lm;
    lm.task.kind = TaskKind::Lm;
    const nlohmann::json lm_task = lm.to_json()["task"];
    for (auto it = lm_task.begin(); it != lm_task.end(); ++it)
        if (!j["task"].contains(it.key())) j["task"][it.key()] = it.value();
    return j;
}

// A key's default as compact JSON ("" for an object: its keys are listed one by one).
std::string config_default(const std::string& key) {
    static const nlohmann::json defaults = config_defaults();
    const nlohmann::json* v = &defaults;
    size_t at = 0;
    while (at <= key.size()) {
        size_t dot = key.find('.', at);
        if (dot == std::string::npos) dot = key.size();
        auto it = v->find(key.substr(at, dot - at));
        if (it == v->end()) return "";
        v = &*it;
        at = dot + 1;
    }
    return v->is_object() ? "" : v->dump();
}

} // namespace

// ---- the parser -------------------------------------------------------------------------------
CommandLine::CommandLine(std::string command, std::string usage, std::string about)
    : command_(std::move(command)), usage_(std::move(usage)), about_(std::move(about)) {}

CommandLine& CommandLine::add(Option o) {
    options_.push_back(std::move(o));
    return *this;
}
CommandLine& CommandLine::option(const std::string& name, const std::string& meta, std::string& out,
                                 const std::string& help, const std::string& def) {
    return add({name, meta, help, def, Option::Text, &out});
}
CommandLine& CommandLine::option(const std::string& name, const std::string& meta, int64_t& out,
                                 const std::string& help, const std::string& def) {
    return add({name, meta, help, def, Option::Int, &out});
}
CommandLine& CommandLine::option(const std::string& name, const std::string& meta, uint64_t& out,
                                 const std::string& help, const std::string& def) {
    return add({name, meta, help, def, Option::Uint, &out});
}
CommandLine& CommandLine::option(const std::string& name, const std::string& meta, double& out,
                                 const std::string& help, const std::string& def) {
    return add({name, meta, help, def, Option::Num, &out});
}
CommandLine& CommandLine::flag(const std::string& name, bool& out, const std::string& help) {
    return add({name, "", help, "", Option::Flag, &out});
}
CommandLine& CommandLine::positional(const std::string& meta, std::string& out, const std::string& help) {
    Option o{meta, meta, help, "", Option::Positional, &out};
    o.required = true;
    return add(std::move(o));
}
CommandLine& CommandLine::positionals(const std::string& meta, std::vector<std::string>& out, const std::string& help) {
    Option o{meta, meta, help, "", Option::Positionals, &out};
    o.required = true;
    return add(std::move(o));
}
CommandLine& CommandLine::required(const std::string& name) {
    Option* o = find(name);
    if (!o) throw Error(fmt::format("internal: {}: required() of an undeclared option {}", command_, name));
    o->required = true;
    return *this;
}
CommandLine& CommandLine::config_keys(std::vector<std::string>& out, const std::string& prefix) {
    config_out_ = &out;
    config_prefix_ = prefix;
    return *this;
}

CommandLine::Option* CommandLine::find(const std::string& name) {
    for (Option& o : options_)
        if (o.name == name && o.kind != Option::Positional && o.kind != Option::Positionals) return &o;
    return nullptr;
}

bool CommandLine::given(const std::string& name) const {
    return std::any_of(options_.begin(), options_.end(), [&](const Option& o) { return o.name == name && o.seen; });
}

void CommandLine::set(Option& o, const std::string& value) {
    const std::string what = fmt::format("{}: {} '{}'", command_, o.name, text_excerpt(value, 40));
    auto whole = [&](const char* end) { return !value.empty() && *end == '\0' && errno == 0; };
    errno = 0;
    char* end = nullptr;
    switch (o.kind) {
    case Option::Text:
    case Option::Positional: *static_cast<std::string*>(o.out) = value; break;
    case Option::Positionals: static_cast<std::vector<std::string>*>(o.out)->push_back(value); break;
    case Option::Int: {
        const long long v = std::strtoll(value.c_str(), &end, 10);
        if (!whole(end)) throw Error(what + " is not an integer");
        *static_cast<int64_t*>(o.out) = v;
        break;
    }
    case Option::Uint: {
        const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
        if (!whole(end) || value.find('-') != std::string::npos) throw Error(what + " is not an integer >= 0");
        *static_cast<uint64_t*>(o.out) = v;
        break;
    }
    case Option::Num: {
        const double v = std::strtod(value.c_str(), &end);
        if (!whole(end)) throw Error(what + " is not a number");
        *static_cast<double*>(o.out) = v;
        break;
    }
    case Option::Flag: *static_cast<bool*>(o.out) = true; break;
    }
    o.seen = true;
}

bool CommandLine::parse(const std::vector<std::string>& args) {
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--help" || a == "-h") {
            std::fputs(help().c_str(), stdout);
            return false;
        }
        if (!a.starts_with("--")) {
            auto it = std::find_if(options_.begin(), options_.end(), [&](const Option& o) {
                return (o.kind == Option::Positional && !o.seen) || o.kind == Option::Positionals;
            });
            if (it == options_.end())
                throw Error(fmt::format("{}: unexpected argument '{}' (see `mambagrad {} --help`)", command_,
                                        text_excerpt(a, 40), command_));
            set(*it, a);
            continue;
        }
        const size_t eq = a.find('=');
        const std::string name = a.substr(0, eq);
        const bool inline_value = eq != std::string::npos;
        auto value = [&]() -> std::string {
            if (inline_value) return a.substr(eq + 1);
            if (i + 1 >= args.size() || (args[i + 1].starts_with("--") && args[i + 1].size() > 2))
                throw Error(fmt::format("{}: {} needs a value", command_, text_excerpt(name, 60)));
            return args[++i];
        };
        if (Option* o = find(name)) {
            if (o->kind == Option::Flag) {
                if (inline_value) throw Error(fmt::format("{}: {} takes no value", command_, name));
                set(*o, "");
            } else {
                set(*o, value());
            }
            continue;
        }
        if (config_out_ && name.size() > 2) {
            // a config key: the config reader checks it, so a bad key reads the same from a flag,
            // a file or a checkpoint ("train config: unknown key 'task.grdi'; allowed keys: ...")
            const std::string key = name.substr(2);
            config_out_->push_back(key == "config" ? name : "--" + config_prefix_ + key);
            config_out_->push_back(value());
            continue;
        }
        throw Error(fmt::format("{}: unknown option {} (see `mambagrad {} --help`)", command_, text_excerpt(name, 60),
                                command_));
    }
    for (const Option& o : options_)
        if (o.required && !o.seen)
            throw Error(fmt::format("{}: {} is required (see `mambagrad {} --help`)", command_,
                                    o.kind == Option::Positional || o.kind == Option::Positionals ? o.meta
                                                                                                  : o.name + " " + o.meta,
                                    command_));
    return true;
}

std::string CommandLine::help() const {
    std::string out = fmt::format("usage: mambagrad {}\n\n{}\n", usage_, about_);
    auto line = [&](const std::string& left, const std::string& def, const std::string& help) {
        if (def.empty()) out += fmt::format("  {:<44} {}\n", left, help);
        else out += fmt::format("  {:<44} {} (default {})\n", left, help, def);
    };
    bool any = false;
    for (const Option& o : options_) {
        if (!any) out += "\noptions:\n";
        any = true;
        const std::string left = o.kind == Option::Positional    ? o.meta
                                 : o.kind == Option::Positionals ? o.meta + " ..."
                                 : o.kind == Option::Flag        ? o.name
                                                                 : o.name + " " + o.meta;
        line(left, o.def, o.required ? o.help + " (required)" : o.help);
    }
    if (config_out_) {
        out += config_prefix_.empty()
                   ? "\nconfig keys (--KEY VALUE or --KEY=VALUE, applied after --config FILE; VALUE is read as JSON\n"
                     "when it parses, else as text; train/config.h has the details):\n"
                   : fmt::format("\ntask keys (--KEY VALUE: the config key {}KEY; --config FILE takes the task from a "
                                 "training config):\n", config_prefix_);
        if (config_prefix_.empty()) line("--config FILE", "", "start from this config file (JSON) instead of the defaults");
        for (const ConfigKeyDoc& d : config_key_docs()) {
            if (!d.key.starts_with(config_prefix_)) continue;
            const std::string key = d.key.substr(config_prefix_.size());
            line("--" + key + " " + d.type, config_default(d.key), d.meaning);
        }
    }
    return out;
}

} // namespace mg::train
