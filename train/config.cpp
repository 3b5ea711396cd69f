// train/config.cpp: see train/config.h.
#include "train/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/read_file.h"
#include "train/pretrained.h"
#include "tensor/check.h"
#include "tensor/json.h"
#include "tensor/runtime.h"
#include "train/checkpoint.h"

namespace mg::train {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

constexpr const char* kWhere = "train config";

std::vector<std::string> variant_names() {
    std::vector<std::string> out;
    for (data::MqarVariant v : data::all_variants()) out.emplace_back(data::variant_name(v));
    return out;
}

data::MqarVariant read_variant(const JsonSection& s, const std::string& key, const json& v) {
    return data::parse_variant(s.choice(key, v, variant_names()));
}

// "64x4,128x8", "zoology", "paper", or [[64, 4], [128, 8]].
std::vector<data::GridCell> read_grid(const JsonSection& s, const std::string& key, const json& v) {
    const char* expected = "a list of [L, N] pairs, a string like \"64x4,128x8\", \"zoology\" or \"paper\"";
    std::vector<data::GridCell> grid;
    if (v.is_string()) {
        const std::string text = v.get<std::string>();
        if (text == "zoology") return data::zoology_grid();
        if (text == "paper") return data::paper_grid();
        std::stringstream ss(text);
        std::string cell;
        while (std::getline(ss, cell, ',')) {
            long long L = 0, N = 0;
            char x = 0, extra = 0;
            if (std::sscanf(cell.c_str(), " %lld %c %lld %c", &L, &x, &N, &extra) != 3 || (x != 'x' && x != 'X'))
                s.fail(key, v, expected);
            grid.emplace_back(L, N);
        }
    } else if (v.is_array()) {
        for (const json& c : v) {
            if (!c.is_array() || c.size() != 2 || !c[0].is_number_integer() || !c[1].is_number_integer())
                s.fail(key, v, expected);
            grid.emplace_back(c[0].get<int64_t>(), c[1].get<int64_t>());
        }
    } else {
        s.fail(key, v, expected);
    }
    if (grid.empty()) s.fail(key, v, expected);
    for (const auto& [L, N] : grid)
        if (L < 2 || N < 1) s.fail(key, v, "cells with L >= 2 and N >= 1");
    return grid;
}

const std::vector<std::string> kTopKeys = {
    "model",      "task",         "seed",          "batch_size", "grad_accum_steps", "epochs",  "max_steps",  "shuffle",
    "lr",         "betas",        "eps",           "weight_decay", "no_decay", "lr_scale", "adamw",        "schedule",
    "warmup_fraction", "min_lr",  "clip_value",    "clip_norm",  "nan_guard", "log_grad_norms", "eval_every",       "log_every",
    "target_accuracy", "device", "precision", "run_dir",       "checkpoint_every", "keep_checkpoints", "resume", "init"};
const std::vector<std::string> kTaskKeys = {"kind",       "variant", "grid", "train_examples", "valid_examples",
                                            "test_examples", "vocab_size", "noise", "binding", "seed", "test_variants"};
const std::vector<std::string> kLmTaskKeys = {"kind",           "corpus",        "seq_len",     "tokenizer",
                                              "valid_fraction", "test_fraction", "eval_batches"};


} // namespace

json default_model_json() { return json{{"preset", "zoology"}, {"d_model", 64}, {"vocab_size", "auto"}}; }

// ---- task -------------------------------------------------------------------------------------------

data::MqarGridData TaskConfig::generate(data::MqarVariant v, data::Split split, int64_t examples_per_cell) const {
    data::MqarConfig base;
    base.variant = v;
    base.vocab_size = vocab_size;
    base.num_examples = examples_per_cell;
    base.split = split;
    base.insert_noise = noise;
    base.binding = binding;
    if (seed) base.seed_base = *seed + (split == data::Split::Train ? 0 : split == data::Split::Valid ? 1000000 : 2000000);
    return data::generate_mqar_grid(base, grid);
}

int64_t TaskConfig::model_vocab() const {
    if (is_lm()) return tokenizer.empty() ? data::kTextVocab : tokenizer_vocab;
    int64_t v = 0;
    std::vector<data::MqarVariant> all = test_variants;
    all.push_back(variant);
    for (data::MqarVariant x : all) {
        data::MqarConfig c;
        c.variant = x;
        c.vocab_size = vocab_size;
        c.insert_noise = noise;
        v = std::max(v, data::mqar_model_vocab(c));
    }
    return v;
}

// ---- config -----------------------------------------------------------------------------------------

// an lr_scale key selects a parameter when it is one or more whole components of its dotted name
static bool key_selects(const std::string& key, const std::string& param) {
    return ("." + param + ".").find("." + key + ".") != std::string::npos;
}

double TrainConfig::lr_scale_of(const std::string& param) const {
    double scale = 1.0;
    for (const auto& [key, v] : lr_scale)
        if (key_selects(key, param)) scale *= v;
    return scale;
}

ojson TrainConfig::to_json() const {
    ojson t;
    t["kind"] = task.is_lm() ? "lm" : "mqar";
    if (task.is_lm()) {
        t["corpus"] = task.corpus;
        t["seq_len"] = task.seq_len;
        t["tokenizer"] = task.tokenizer;
        t["valid_fraction"] = task.valid_fraction;
        t["test_fraction"] = task.test_fraction;
        t["eval_batches"] = task.eval_batches;
    } else {
        t["variant"] = data::variant_name(task.variant);
        ojson grid = ojson::array();
        for (const auto& [L, N] : task.grid) grid.push_back({L, N});
        t["grid"] = grid;
        t["train_examples"] = task.train_examples;
        t["valid_examples"] = task.valid_examples;
        t["test_examples"] = task.test_examples;
        t["vocab_size"] = task.vocab_size;
        t["noise"] = task.noise;
        t["binding"] = data::binding_name(task.binding);
        t["seed"] = task.seed ? ojson(*task.seed) : ojson(nullptr);
        ojson tv = ojson::array();
        for (auto v : task.test_variants) tv.push_back(data::variant_name(v));
        t["test_variants"] = tv;
    }

    ojson j;
    if (is_transformer()) { // "arch" only here: a Mamba config's JSON stays what it was before the key
        const ojson t = transformer.to_json();
        j["model"] = ojson{{"arch", "transformer"}};
        for (auto it = t.begin(); it != t.end(); ++it) j["model"][it.key()] = it.value();
    } else {
        j["model"] = model.to_json();
    }
    j["task"] = t;
    j["seed"] = seed;
    j["batch_size"] = batch_size;
    j["grad_accum_steps"] = grad_accum_steps;
    j["epochs"] = epochs;
    j["max_steps"] = max_steps;
    j["shuffle"] = shuffle;
    j["lr"] = lr;
    j["betas"] = {beta1, beta2};
    j["eps"] = eps;
    j["weight_decay"] = weight_decay;
    j["no_decay"] = no_decay;
    j["lr_scale"] = ojson::object();
    for (const auto& [k, v] : lr_scale) j["lr_scale"][k] = v;
    j["adamw"] = adamw_style_name(adamw);
    j["schedule"] = schedule_name(schedule);
    j["warmup_fraction"] = warmup_fraction;
    j["min_lr"] = min_lr;
    j["clip_value"] = clip_value;
    j["clip_norm"] = clip_norm;
    j["nan_guard"] = nan_guard;
    j["log_grad_norms"] = log_grad_norms;
    j["eval_every"] = eval_every;
    j["log_every"] = log_every;
    j["target_accuracy"] = target_accuracy;
    j["device"] = device;
    j["precision"] = precision;
    j["run_dir"] = run_dir;
    j["checkpoint_every"] = checkpoint_every;
    j["keep_checkpoints"] = keep_checkpoints;
    j["resume"] = resume;
    j["init"] = init;
    return j;
}

TrainConfig TrainConfig::from_json(const json& j) {
    TrainConfig c;
    JsonSection s(j, kWhere, "", kTopKeys);

    // task first: the model's "auto" vocabulary depends on it
    if (const json* tj = s.find("task")) {
        if (tj->is_object() && tj->contains("kind")) {
            const json& k = (*tj)["kind"];
            if (!k.is_string() || (k != "mqar" && k != "lm"))
                throw Error(fmt::format("{}: task.kind is {}, expected one of: mqar, lm", kWhere, json_excerpt(k)));
            c.task.kind = k == "lm" ? TaskKind::Lm : TaskKind::Mqar;
        }
        JsonSection t(*tj, kWhere, "task.", c.task.is_lm() ? kLmTaskKeys : kTaskKeys);
        if (c.task.is_lm()) {
            t.string("corpus", c.task.corpus);
            t.integer("seq_len", c.task.seq_len, 1);
            t.string("tokenizer", c.task.tokenizer);
            // the model's "auto" vocabulary and the checks below need its size
            if (!c.task.tokenizer.empty()) c.task.tokenizer_vocab = data::load_tokenizer(c.task.tokenizer)->vocab_size();
            t.number("valid_fraction", c.task.valid_fraction, 0, 0.5, "in [0, 0.5]");
            t.number("test_fraction", c.task.test_fraction, 0, 0.5, "in [0, 0.5]");
            t.integer("eval_batches", c.task.eval_batches, 0);
        }
        if (const json* v = t.find("variant")) c.task.variant = read_variant(t, "variant", *v);
        if (const json* v = t.find("grid")) c.task.grid = read_grid(t, "grid", *v);
        t.integer("train_examples", c.task.train_examples, 1);
        t.integer("valid_examples", c.task.valid_examples, 1);
        t.integer("test_examples", c.task.test_examples, 1);
        t.integer("vocab_size", c.task.vocab_size, 1);
        t.boolean("noise", c.task.noise);
        if (const json* v = t.find("binding")) c.task.binding = data::parse_binding(t.choice("binding", *v, {"pair", "first"}));
        if (const json* v = t.find("seed")) {
            if (v->is_null()) c.task.seed.reset();
            else if (v->is_number_unsigned()) c.task.seed = v->get<uint64_t>();
            else t.fail("seed", *v, "null (the paper's seeds) or an integer >= 0");
        }
        if (const json* v = t.find("test_variants")) {
            if (!v->is_array()) t.fail("test_variants", *v, fmt::format("a list of variants from: {}", fmt::join(variant_names(), ", ")));
            c.task.test_variants.clear();
            for (const json& x : *v) c.task.test_variants.push_back(read_variant(t, "test_variants", x));
        }
    }

    json mj = s.find("model") ? *s.find("model") : default_model_json();
    MG_CHECK(mj.is_object(), "{}: model is {}, expected a JSON object (nn/config.h's model config)", kWhere, json_excerpt(mj));
    bool auto_vocab = false;
    if (auto it = mj.find("vocab_size"); it != mj.end() && it->is_string()) {
        MG_CHECK(it->get<std::string>() == "auto", "{}: model.vocab_size is {}, expected \"auto\" or an integer",
                 kWhere, json_excerpt(*it));
        auto_vocab = true;
        mj.erase("vocab_size");
    }
    if (auto it = mj.find("arch"); it != mj.end()) {
        MG_CHECK(it->is_string() && (*it == "mamba" || *it == "transformer"),
                 "{}: model.arch is {}, expected one of: mamba, transformer", kWhere, json_excerpt(*it));
        c.arch = *it == "transformer" ? ModelArch::transformer : ModelArch::mamba;
        mj.erase("arch");
    }
    if (c.is_transformer()) {
        c.transformer = nn::TransformerConfig::from_json(mj, kWhere, "model.");
        if (auto_vocab) c.transformer.vocab_size = c.task.model_vocab();
    } else {
        c.model = nn::MambaConfig::from_json(mj, kWhere, "model.");
        if (auto_vocab) c.model.vocab_size = c.task.model_vocab();
    }

    s.unsigned_integer("seed", c.seed);
    s.integer("batch_size", c.batch_size, 1);
    s.integer("grad_accum_steps", c.grad_accum_steps, 1);
    s.integer("epochs", c.epochs, 0);
    s.integer("max_steps", c.max_steps, 0);
    s.boolean("shuffle", c.shuffle);
    s.number("lr", c.lr, 0, 1e300, ">= 0");
    if (const json* v = s.find("betas")) {
        if (!v->is_array() || v->size() != 2 || !(*v)[0].is_number() || !(*v)[1].is_number() ||
            !((*v)[0].get<double>() >= 0 && (*v)[0].get<double>() < 1) ||
            !((*v)[1].get<double>() >= 0 && (*v)[1].get<double>() < 1))
            s.fail("betas", *v, "[beta1, beta2] with both in [0, 1)");
        c.beta1 = (*v)[0].get<double>();
        c.beta2 = (*v)[1].get<double>();
    }
    s.number("eps", c.eps, 0, 1, "in [0, 1]");
    s.number("weight_decay", c.weight_decay, 0, 1e300, ">= 0");
    if (const json* v = s.find("no_decay")) c.no_decay = s.choice("no_decay", *v, {"none", "mamba_ssm"});
    if (const json* v = s.find("lr_scale")) {
        if (!v->is_object()) s.fail("lr_scale", *v, "an object of parameter-name components to multipliers >= 0, e.g. {\"long_conv\": 0.1}");
        for (auto it = v->begin(); it != v->end(); ++it) {
            const bool ok_key = !it.key().empty() && it.key().front() != '.' && it.key().back() != '.';
            if (!ok_key || !it.value().is_number() || !(it.value().get<double>() >= 0) ||
                !std::isfinite(it.value().get<double>()))
                s.fail("lr_scale", *v, "an object of parameter-name components to multipliers >= 0, e.g. {\"long_conv\": 0.1}");
            c.lr_scale[it.key()] = it.value().get<double>();
        }
    }
    if (const json* v = s.find("adamw")) c.adamw = parse_adamw_style(s.choice("adamw", *v, {"transformers", "torch"}));
    if (const json* v = s.find("schedule")) c.schedule = parse_schedule(s.choice("schedule", *v, {"cosine", "constant"}));
    s.number("warmup_fraction", c.warmup_fraction, 0, 1, "in [0, 1]");
    s.number("min_lr", c.min_lr, 0, 1e300, ">= 0");
    s.number("clip_value", c.clip_value, 0, 1e300, ">= 0 (0: off)");
    s.number("clip_norm", c.clip_norm, 0, 1e300, ">= 0 (0: off)");
    s.boolean("nan_guard", c.nan_guard);
    s.boolean("log_grad_norms", c.log_grad_norms);
    s.integer("eval_every", c.eval_every, 0);
    s.integer("log_every", c.log_every, 1);
    s.number("target_accuracy", c.target_accuracy, 0, 1, "in [0, 1] (0: no early stop)");
    s.string("device", c.device);
    if (const json* v = s.find("precision")) {
        if (v->is_string() && v->get<std::string>() == "bf16")
            s.fail("precision", *v, "fp32 or tf32 (bf16 mixed precision is not available yet)");
        c.precision = s.choice("precision", *v, {"fp32", "tf32"});
    }
    s.string("run_dir", c.run_dir);
    s.integer("checkpoint_every", c.checkpoint_every, 0);
    s.integer("keep_checkpoints", c.keep_checkpoints, 0);
    s.string("resume", c.resume);
    s.string("init", c.init);
    c.validate();
    return c;
}

void TrainConfig::validate() const {
    if (is_transformer()) transformer.validate(kWhere, "model.");
    else model.validate();
    MG_CHECK(epochs > 0 || max_steps > 0, "{}: epochs and max_steps are both 0; set one of them", kWhere);
    if (!lr_scale.empty()) {
        // every key must select a parameter: a typo would otherwise change nothing, silently
        const std::vector<nn::ParameterSpec> specs =
            is_transformer() ? nn::parameter_specs(transformer) : nn::parameter_specs(model);
        for (const auto& entry : lr_scale) {
            const std::string& key = entry.first;
            MG_CHECK(std::any_of(specs.begin(), specs.end(), [&](const nn::ParameterSpec& p) { return key_selects(key, p.name); }),
                     "{}: lr_scale key '{}' selects no parameter of the model (keys are components of parameter "
                     "names, e.g. long_conv or mixer.dt_proj)", kWhere, text_excerpt(key, 60));
        }
    }
    const int64_t need = task.model_vocab();
    if (task.is_lm()) {
        MG_CHECK(model_vocab_size() >= need,
                 "{}: model.vocab_size is {}, but {} go up to {}; set model.vocab_size >= {} or \"auto\"",
                 kWhere, model_vocab_size(), task.tokenizer.empty() ? "byte-level LM tokens (data/text.h)"
                 : fmt::format("the ids of task.tokenizer '{}'", task.tokenizer), need - 1, need);
        MG_CHECK(!task.corpus.empty(), "{}: task.corpus is \"\", expected a text file", kWhere);
        MG_CHECK(task.valid_fraction + task.test_fraction < 1, "{}: task.valid_fraction {} + task.test_fraction {} "
                 "leave no training text", kWhere, task.valid_fraction, task.test_fraction);
    } else {
        std::vector<std::string_view> used = {data::variant_name(task.variant)};
        for (data::MqarVariant v : task.test_variants) used.push_back(data::variant_name(v));
        MG_CHECK(model_vocab_size() >= need,
                 "{}: model.vocab_size is {}, but the task (vocab_size {}, variants {}) emits token ids up to {}; set "
                 "model.vocab_size >= {} or \"auto\"",
                 kWhere, model_vocab_size(), task.vocab_size, fmt::join(used, ", "), need - 1, need);
        for (size_t i = 0; i < task.grid.size(); ++i) {
            data::MqarConfig c;
            c.variant = task.variant;
            c.vocab_size = task.vocab_size;
            c.seq_len = task.grid[i].first;
            c.num_kv_pairs = task.grid[i].second;
            c.insert_noise = task.noise;
            try {
                data::validate(c);
            } catch (const Error& e) {
                throw Error(fmt::format("{}: task.grid cell ({}, {}) cannot hold variant {}: {}", kWhere, c.seq_len,
                                        c.num_kv_pairs, data::variant_name(task.variant), e.what()));
            }
        }
    }
    if (device != "auto") {
        try {
            (void)Device::parse(device);
        } catch (const Error&) {
            throw Error(fmt::format("{}: device is \"{}\", expected one of: auto, cpu, cuda, cuda:N", kWhere,
                                    text_excerpt(device, 40)));
        }
    }
}

Device TrainConfig::resolved_device() const {
    if (device == "auto") return cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu();
    Device d = Device::parse(device);
    MG_CHECK(d.is_cpu() || d.index < cuda_device_count(), "{}: device is \"{}\", but {} CUDA device(s) are visible{}",
             kWhere, device, cuda_device_count(), cuda_compiled() ? "" : " (this build has no CUDA)");
    return d;
}

void apply_override(json& config, const std::string& key, const std::string& value) {
    MG_CHECK(!key.empty() && key.front() != '.' && key.back() != '.' && key.find("..") == std::string::npos,
             "{}: '--{}' is not a config key (expected e.g. --lr 1e-3 or --task.grid 64x4)", kWhere, text_excerpt(key, 60));
    MG_CHECK(json_nesting_depth(value) <= kMaxJsonDepth, "{}: --{}: the value is JSON nested more than {} levels deep",
             kWhere, text_excerpt(key, 60), kMaxJsonDepth);
    json v = parse_json_or_discard(value);
    if (v.is_discarded()) v = value; // not JSON: a plain string
    set_config_key(config, key, std::move(v));
}

void set_config_key(json& config, const std::string& key, json v) {
    MG_CHECK(!key.empty() && key.front() != '.' && key.back() != '.' && key.find("..") == std::string::npos,
             "{}: '{}' is not a config key (expected e.g. lr or task.grid)", kWhere, text_excerpt(key, 60));
    json* at = &config;
    std::string path;
    std::stringstream ss(key);
    std::string part;
    std::vector<std::string> parts;
    while (std::getline(ss, part, '.')) parts.push_back(part);
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
        path += (path.empty() ? "" : ".") + parts[i];
        if (!at->contains(parts[i])) (*at)[parts[i]] = json::object();
        at = &(*at)[parts[i]];
        MG_CHECK(at->is_object(), "{}: setting {}: {} is {}, not an object with keys", kWhere, text_excerpt(key, 60), path,
                 json_excerpt(*at));
    }
    (*at)[parts.back()] = std::move(v);
}

json checkpoint_config(const std::string& checkpoint) {
    if (is_model_folder(checkpoint)) return folder_train_config(read_model_folder(checkpoint));
    return checkpoint_config(read_safetensors_header(checkpoint).metadata, checkpoint);
}

std::string task_kind(const json& config) {
    if (!config.is_object() || !config.contains("task")) return "mqar";
    const json& task = config["task"];
    MG_CHECK(task.is_object(), "{}: task is {}, expected a JSON object", kWhere, json_excerpt(task));
    if (!task.contains("kind")) return "mqar";
    MG_CHECK(task["kind"].is_string(), "{}: task.kind is {}, expected one of: mqar, lm", kWhere, json_excerpt(task["kind"]));
    return task["kind"].get<std::string>();
}

json checkpoint_config(const Metadata& metadata, const std::string& checkpoint) {
    auto it = metadata.find(kCheckpointConfigKey);
    MG_CHECK(it != metadata.end() && !it->second.empty(), "checkpoint '{}' holds no run config (metadata '{}')",
             checkpoint, kCheckpointConfigKey);
    json j = parse_json(it->second, fmt::format("checkpoint '{}': metadata '{}'", checkpoint, kCheckpointConfigKey));
    // the commands edit it (device, task keys) before TrainConfig::from_json reads it: its
    // sections must be objects first
    MG_CHECK(j.is_object(), "checkpoint '{}': metadata '{}' is {}, expected a JSON object (a train config)", checkpoint,
             kCheckpointConfigKey, json_excerpt(j));
    for (const char* section : {"task", "model"})
        MG_CHECK(!j.contains(section) || j[section].is_object(),
                 "checkpoint '{}': metadata '{}': {} is {}, expected a JSON object", checkpoint, kCheckpointConfigKey,
                 section, json_excerpt(j[section]));
    // Written before global_selection.gate existed: the gate was silu (nn/config.h).
    if (j.contains("model") && j["model"].contains("global_selection") &&
        j["model"]["global_selection"].is_object() && !j["model"]["global_selection"].contains("gate"))
        j["model"]["global_selection"]["gate"] = "silu";
    return j;
}

TrainConfig parse_train_args(const std::vector<std::string>& args) {
    std::string config_path, resume, init;
    std::vector<std::pair<std::string, std::string>> overrides;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        MG_CHECK(a.size() > 2 && a.starts_with("--"), "train: unexpected argument '{}'; expected --config FILE or "
                 "--key value", text_excerpt(a, 40));
        std::string key = a.substr(2), value;
        if (auto eq = key.find('='); eq != std::string::npos) {
            value = key.substr(eq + 1);
            key = key.substr(0, eq);
        } else {
            MG_CHECK(i + 1 < args.size(), "train: {} needs a value", text_excerpt(a, 60));
            value = args[++i];
            // "--lr --seed 1": the value is missing, not "1" unexpected
            MG_CHECK(!(value.size() > 2 && value.starts_with("--")), "train: {} needs a value, but the next argument "
                     "is the flag {}", text_excerpt(a, 60), text_excerpt(value, 40));
        }
        if (key == "config") config_path = value;
        else overrides.emplace_back(key, value);
        if (key == "resume") resume = value;
        if (key == "init") init = value;
    }
    json base;
    if (!config_path.empty()) {
        const std::string text = data::read_regular_file(config_path, "train: --config", uint64_t(16) << 20);
        base = parse_json(text, fmt::format("{}: {}", kWhere, config_path));
        MG_CHECK(base.is_object(), "{}: {} holds {}, expected a JSON object", kWhere, config_path, json_excerpt(base));
    } else if (!resume.empty()) {
        MG_CHECK(!is_model_folder(resume), "train: --resume '{}' is a model folder, which holds no trainer state to "
                 "resume; start a run from its weights with --init {}", resume, resume);
        base = checkpoint_config(resume);
    } else if (!init.empty()) {
        // fine-tuning: the model (and task) of the checkpoint or folder, in a run of its own
        base = checkpoint_config(init);
        base["resume"] = "";
        base["run_dir"] = "runs/finetune";
    } else {
        base = TrainConfig{}.to_json();
        base["model"] = default_model_json();
    }
    if (!base.contains("model")) base["model"] = default_model_json();
    // --model.preset on the default model section means the preset as published (its own
    // d_model and vocabulary), not the default's zoology d_model 64 and "auto" vocabulary.
    const bool preset_given = std::any_of(overrides.begin(), overrides.end(),
                                          [](const auto& kv) { return kv.first == "model.preset"; });
    if (preset_given && base["model"] == default_model_json()) base["model"] = json::object();
    for (const auto& [k, v] : overrides) {
        // --task.kind switching kinds starts the task section afresh (the other kind's keys would be
        // unknown keys), and the default run_dir follows the kind
        if (k == "task.kind" && base.contains("task") && base["task"].is_object() &&
            task_kind(base) != v) {
            base["task"] = json::object();
            if (json_string_at(base, "run_dir", "") == TrainConfig{}.run_dir && v == "lm") base["run_dir"] = "runs/lm";
        }
        apply_override(base, k, v);
    }
    return TrainConfig::from_json(base);
}

} // namespace mg::train
