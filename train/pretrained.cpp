// train/pretrained.cpp: see pretrained.h.
#include "train/pretrained.h"

#include <filesystem>
#include <set>

#include "data/atomic_file.h"
#include "data/read_file.h"
#include "data/tokenizer.h"
#include "nn/hf_names.h"
#include "ops/elementwise.h"
#include "tensor/json.h"

namespace mg::train {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxConfigBytes = uint64_t(16) << 20;
const char* const kIndex = "model.safetensors.index.json";
const char* const kSingle = "model.safetensors";

// config.json keys that do not change what the model computes (pretrained.h lists why).
const std::set<std::string> kAcceptedKeys = {
    "residual_in_fp32", "fused_add_norm", "initializer_range", "rescale_prenorm_residual", "time_step_min",
    "time_step_max", "time_step_floor", "time_step_scale", "time_step_init_scheme", "use_cache", "use_mambapy",
    "use_associative_scan", "bos_token_id", "eos_token_id", "pad_token_id", "architectures", "torch_dtype", "dtype",
    "transformers_version", "_name_or_path", "attn_cfg"};
const std::set<std::string> kSsmAccepted = {"use_fast_path", "dt_min", "dt_max", "dt_init", "dt_scale",
                                            "dt_init_floor"};

// Reads config.json's keys, each at most once, and says which were never read.
class HfKeys {
public:
    HfKeys(const json& j, std::string where, std::string prefix) : j_(j), where_(std::move(where)), prefix_(std::move(prefix)) {
        MG_CHECK(j.is_object(), "{}: {} is {}, expected a JSON object", where_, prefix_.empty() ? "the config" : prefix_,
                 json_excerpt(j));
    }
    const json* find(const std::string& key) {
        used_.insert(key);
        auto it = j_.find(key);
        return it == j_.end() ? nullptr : &*it;
    }
    // The value under `key` or its synonym `alt` (both given: they must agree).
    const json* either(const std::string& key, const std::string& alt) {
        const json* a = find(key);
        const json* b = find(alt);
        MG_CHECK(!a || !b || *a == *b, "{}: {}{} = {} and {}{} = {} disagree (they name the same field)", where_,
                 prefix_, key, json_excerpt(*a), prefix_, alt, json_excerpt(*b));
        return a ? a : b;
    }
    int64_t positive(const json* v, const std::string& key) {
        MG_CHECK(v && v->is_number_integer() && v->get<int64_t>() >= 1 && v->get<int64_t>() <= nn::kMaxModelSize,
                 "{}: {}{} is {}, expected a positive integer of at most {}", where_, prefix_, key,
                 v ? json_excerpt(*v) : "missing", nn::kMaxModelSize);
        return v->get<int64_t>();
    }
    // A key that must hold `expected` to describe the model MambaLM computes (absent: allowed).
    void require(const std::string& key, const json& expected, const char* why) {
        const json* v = find(key);
        MG_CHECK(!v || *v == expected, "{}: {}{} = {} is not supported: mambagrad's MambaLM {} ({} expected)", where_,
                 prefix_, key, json_excerpt(*v), why, expected.dump());
    }
    void accept(const std::set<std::string>& keys) {
        for (const std::string& k : keys) used_.insert(k);
    }
    void no_unknown_keys() {
        for (auto it = j_.begin(); it != j_.end(); ++it)
            MG_CHECK(used_.count(it.key()), "{}: {}{} is a field mambagrad does not support (value {}); refusing the "
                     "model rather than ignoring it", where_, prefix_, text_excerpt(it.key(), 60), json_excerpt(it.value()));
    }

private:
    const json& j_;
    std::string where_, prefix_;
    std::set<std::string> used_;
};

bool has_transformers_layout(const json& c) { return c.is_object() && c.contains("model_type"); }

std::string in_dir(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

// Non-throwing filesystem queries (a symlink loop or a denied directory is "not there", and the
// caller's error names the path).
bool exists(const std::string& path) {
    std::error_code ec;
    return fs::exists(path, ec) && !ec;
}
bool is_file(const std::string& path) {
    std::error_code ec;
    return fs::is_regular_file(path, ec) && !ec;
}

} // namespace

bool is_model_folder(const std::string& path) {
    std::error_code ec;
    return !path.empty() && fs::is_directory(path, ec);
}

nn::MambaConfig mamba_config_from_hf(const json& c, const std::string& where) {
    HfKeys k(c, where, "");
    nn::MambaConfig m;
    m.init = nn::InitScheme::mamba;
    const bool transformers = has_transformers_layout(c);
    if (const json* t = k.find("model_type"))
        MG_CHECK(*t == "mamba", "{}: model_type = {} is not supported: mambagrad reads Mamba (model_type \"mamba\"); "
                 "Mamba-2 and hybrids are other models", where, json_excerpt(*t));
    m.d_model = k.positive(k.either("hidden_size", "d_model"), "hidden_size");
    m.n_layer = k.positive(k.either("num_hidden_layers", "n_layer"), "num_hidden_layers");
    m.vocab_size = k.positive(k.find("vocab_size"), "vocab_size");
    const json* pad = k.find("pad_vocab_size_multiple");
    // transformers sizes the embedding by vocab_size and ignores the multiple; mamba_ssm pads
    m.pad_vocab_size_multiple = !transformers && pad ? k.positive(pad, "pad_vocab_size_multiple") : transformers ? 1 : 8;
    if (pad) k.positive(pad, "pad_vocab_size_multiple");

    // mamba_ssm's ssm_cfg, whose keys are synonyms of transformers' top-level ones
    json ssm = json::object();
    if (const json* s = k.find("ssm_cfg")) ssm = *s;
    HfKeys sk(ssm, where, "ssm_cfg.");
    auto field = [&](const char* top, const char* other, const char* in_ssm) -> const json* {
        const json* a = other ? k.either(top, other) : k.find(top);
        const json* b = sk.find(in_ssm);
        MG_CHECK(!a || !b || *a == *b, "{}: {} = {} and ssm_cfg.{} = {} disagree", where, top, json_excerpt(*a), in_ssm,
                 json_excerpt(*b));
        return a ? a : b;
    };
    if (const json* v = field("state_size", nullptr, "d_state")) m.d_state = k.positive(v, "state_size");
    if (const json* v = field("conv_kernel", nullptr, "d_conv")) m.d_conv = k.positive(v, "conv_kernel");
    if (const json* v = field("expand", nullptr, "expand")) m.expand = k.positive(v, "expand");
    if (const json* v = field("time_step_rank", nullptr, "dt_rank")) {
        MG_CHECK(*v == "auto" || (v->is_number_integer() && v->get<int64_t>() >= 1),
                 "{}: time_step_rank is {}, expected \"auto\" or a positive integer", where, json_excerpt(*v));
        m.dt_rank = v->is_string() ? 0 : v->get<int64_t>();
    }
    if (const json* v = k.either("layer_norm_epsilon", "norm_epsilon")) {
        MG_CHECK(v->is_number() && v->get<double>() > 0, "{}: layer_norm_epsilon is {}, expected a positive number",
                 where, json_excerpt(*v));
        m.norm_eps = v->get<double>();
    }
    for (const char* key : {"intermediate_size", "d_inner"}) // d_inner: the published *-hf configs carry it too
        if (const json* v = k.find(key))
            MG_CHECK(*v == m.d_inner(), "{}: {} = {} is not expand * hidden_size = {} * {} = {}", where, key,
                     json_excerpt(*v), m.expand, m.d_model, m.d_inner());
    k.require("hidden_act", "silu", "gates with SiLU");
    k.require("use_bias", false, "has no bias in in_proj and out_proj");
    k.require("use_conv_bias", true, "has a bias in its short convolution");
    k.require("rms_norm", true, "normalises with RMSNorm");
    k.require("tie_word_embeddings", true, "ties the output head to the embedding");
    k.require("tie_embeddings", true, "ties the output head to the embedding");
    k.require("d_intermediate", 0, "has no MLP between the mixers");
    k.require("attn_layer_idx", json::array(), "has no attention layers");
    if (const json* a = k.find("attn_cfg"))
        MG_CHECK(a->is_object() && a->empty(), "{}: attn_cfg = {} is not supported: mambagrad's MambaLM has no "
                 "attention layers", where, json_excerpt(*a));
    sk.require("layer", "Mamba1", "is Mamba (version 1)");
    sk.require("bias", false, "has no bias in in_proj and out_proj");
    sk.require("conv_bias", true, "has a bias in its short convolution");
    k.accept(kAcceptedKeys);
    sk.accept(kSsmAccepted);
    k.no_unknown_keys();
    sk.no_unknown_keys();
    m.validate(where);
    return m;
}

nlohmann::ordered_json hf_config_of(const nn::MambaConfig& cfg, int64_t bos, int64_t eos) {
    MG_CHECK(!cfg.global_selection.enabled,
             "export: the model has global selection (a long convolution gating dt in layers {}); transformers' "
             "MambaForCausalLM has no such module and would load the other weights into a different model, so "
             "mambagrad does not export it", cfg.global_selection.layers.empty() ? "all" : fmt::format("{}", fmt::join(cfg.global_selection.layers, ", ")));
    // the keys and values MambaConfig(...).save_pretrained writes (transformers 5.25), the
    // initialisation's keys at their defaults
    nlohmann::ordered_json j;
    j["architectures"] = {"MambaForCausalLM"};
    j["bos_token_id"] = bos;
    j["conv_kernel"] = cfg.d_conv;
    j["dtype"] = "float32";
    j["eos_token_id"] = eos;
    j["expand"] = cfg.expand;
    j["hidden_act"] = "silu";
    j["hidden_size"] = cfg.d_model;
    j["initializer_range"] = 0.1;
    j["intermediate_size"] = cfg.d_inner();
    j["layer_norm_epsilon"] = cfg.norm_eps;
    j["model_type"] = "mamba";
    j["num_hidden_layers"] = cfg.n_layer;
    j["pad_token_id"] = eos;
    j["rescale_prenorm_residual"] = false;
    j["residual_in_fp32"] = true;
    j["state_size"] = cfg.d_state;
    j["tie_word_embeddings"] = true;
    j["time_step_floor"] = 1e-4;
    j["time_step_init_scheme"] = "random";
    j["time_step_max"] = 0.1;
    j["time_step_min"] = 0.001;
    j["time_step_rank"] = cfg.resolved_dt_rank();
    j["time_step_scale"] = 1.0;
    j["use_associative_scan"] = true;
    j["use_bias"] = false;
    j["use_cache"] = true;
    j["use_conv_bias"] = true;
    j["use_mambapy"] = false;
    j["vocab_size"] = cfg.padded_vocab();
    return j;
}

ModelFolder read_model_folder(const std::string& dir) {
    MG_CHECK(is_model_folder(dir), "model folder '{}' is not a directory", dir);
    ModelFolder f;
    f.dir = dir;
    const std::string config_path = in_dir(dir, "config.json");
    MG_CHECK(exists(config_path), "model folder '{}' has no config.json (expected a transformers or mamba_ssm "
             "Mamba model folder)", dir);
    const std::string where = fmt::format("model folder '{}': config.json", dir);
    const json c = parse_json(data::read_regular_file(config_path, where, kMaxConfigBytes), where);
    // a mambagrad run directory also holds a config.json: its run config, not a model's
    MG_CHECK(!(c.is_object() && c.contains("model") && c.contains("task")),
             "'{}' is a mambagrad run folder, not a model folder; give one of its checkpoints (e.g. {})", dir,
             in_dir(dir, "final.safetensors"));
    f.model = mamba_config_from_hf(c, where);
    f.layout = has_transformers_layout(c) ? "transformers" : "mamba_ssm";

    const std::string index = in_dir(dir, kIndex);
    if (exists(in_dir(dir, kSingle))) { // transformers reads the single file first too
        f.files.push_back(in_dir(dir, kSingle));
    } else if (exists(index)) {
        const std::string iw = fmt::format("model folder '{}': {}", dir, kIndex);
        const json j = parse_json(data::read_regular_file(index, iw, kMaxConfigBytes), iw);
        MG_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object() && !j["weight_map"].empty(),
                 "{}: expected an object with a non-empty \"weight_map\" of tensor names to files", iw);
        std::set<std::string> seen;
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            MG_CHECK(it.value().is_string(), "{}: weight_map[\"{}\"] is {}, expected a file name", iw,
                     text_excerpt(it.key(), 60), json_excerpt(it.value()));
            const std::string file = it.value().get<std::string>();
            f.index[it.key()] = file;
            MG_CHECK(!file.empty() && file.find('/') == std::string::npos && file.find('\\') == std::string::npos &&
                         file != "." && file != "..",
                     "{}: weight_map[\"{}\"] = \"{}\" is not a file name inside the folder", iw,
                     text_excerpt(it.key(), 60), text_excerpt(file, 60));
            if (seen.insert(file).second) {
                MG_CHECK(is_file(in_dir(dir, file)), "{}: shard '{}' (holding '{}') is missing or not a file", iw, file,
                         text_excerpt(it.key(), 60));
                f.files.push_back(in_dir(dir, file));
            }
        }
    } else {
        const bool pickle = exists(in_dir(dir, "pytorch_model.bin")) || exists(in_dir(dir, "pytorch_model.bin.index.json"));
        MG_CHECK(false, "model folder '{}' has no {} or {}{}", dir, kSingle, kIndex,
                 pickle ? " (it holds pytorch_model.bin, a PyTorch pickle, which mambagrad does not read: use the "
                          "model's safetensors version, e.g. the *-hf repositories, or save it with "
                          "save_pretrained(safe_serialization=True))"
                        : "");
    }
    if (exists(in_dir(dir, "tokenizer.json"))) f.tokenizer = in_dir(dir, "tokenizer.json");
    return f;
}

json folder_train_config(const ModelFolder& folder) {
    json task = {{"kind", "lm"}};
    if (!folder.tokenizer.empty()) task["tokenizer"] = fs::absolute(folder.tokenizer).string();
    return {{"model", json(folder.model.to_json())}, {"task", task}};
}

namespace {

// transformers' names and mamba_ssm's (already ours) both map onto ours.
std::string our_name(const std::string& theirs) { return nn::mamba_name_from_transformers(theirs); }

// Checks the (our-named) shapes against the config: every parameter present with its shape,
// nothing but parameters and a tied lm_head.weight.
void check_against_config(const ModelFolder& f, const std::map<std::string, std::pair<Shape, std::string>>& have) {
    std::set<std::string> params;
    for (const nn::ParameterSpec& p : nn::parameter_specs(f.model)) {
        params.insert(p.name);
        auto it = have.find(p.name);
        MG_CHECK(it != have.end(), "model folder '{}': parameter '{}' {} of its config.json is in none of its files "
                 "({})", f.dir, f.layout == "transformers" ? nn::mamba_name_to_transformers(p.name) : p.name,
                 shape_str(p.shape), fmt::join(f.files, ", "));
        MG_CHECK(it->second.first == p.shape, "model folder '{}': tensor '{}' in '{}' is {}, its config.json says {}",
                 f.dir, f.layout == "transformers" ? nn::mamba_name_to_transformers(p.name) : p.name, it->second.second,
                 shape_str(it->second.first), shape_str(p.shape));
    }
    for (const auto& [name, sf] : have)
        MG_CHECK(params.count(name) || name == "lm_head.weight",
                 "model folder '{}': tensor '{}' {} in '{}' is not a parameter of the Mamba its config.json describes",
                 f.dir, name, shape_str(sf.first), sf.second);
}

} // namespace

SafetensorsHeader read_folder_header(const ModelFolder& f) {
    SafetensorsHeader out;
    std::map<std::string, std::pair<Shape, std::string>> have;
    for (const std::string& file : f.files) {
        SafetensorsHeader h = read_safetensors_header(file);
        for (SafetensorsEntry& e : h.entries) {
            const std::string name = our_name(e.name);
            MG_CHECK(!have.count(name), "model folder '{}': tensor '{}' is in both '{}' and '{}'", f.dir, e.name,
                     have.count(name) ? have[name].second : "", file);
            MG_CHECK(is_floating(e.dtype), "model folder '{}': tensor '{}' in '{}' is {}, expected a float type",
                     f.dir, e.name, file, dtype_name(e.dtype));
            if (!f.index.empty()) {
                auto at = f.index.find(e.name);
                MG_CHECK(at != f.index.end() && in_dir(f.dir, at->second) == file,
                         "model folder '{}': tensor '{}' is in '{}', but {} {}", f.dir, e.name, file, kIndex,
                         at == f.index.end() ? std::string("does not list it") : "places it in '" + at->second + "'");
            }
            have[name] = {e.shape, file};
            e.name = name;
            if (name != "lm_head.weight") out.entries.push_back(e);
        }
    }
    for (const auto& [name, file] : f.index)
        MG_CHECK(have.count(our_name(name)), "model folder '{}': {} places '{}' in '{}', which does not hold it",
                 f.dir, kIndex, text_excerpt(name, 60), file);
    check_against_config(f, have);
    return out;
}

nn::StateDict load_folder_weights(const ModelFolder& f) {
    read_folder_header(f); // names, shapes and dtypes, before any data is read
    nn::StateDict theirs;
    for (const std::string& file : f.files) {
        SafetensorsFile sf = load_safetensors(file);
        require_finite(file, sf.tensors);
        for (auto& [name, t] : sf.tensors) theirs[name] = t;
    }
    // renamed (mamba_ssm's names are ours already); a head written beside the embedding must be it
    return nn::from_transformers_mamba(theirs);
}

void save_model_folder(const std::string& dir, const nn::MambaConfig& cfg, const NamedTensors& params,
                       const std::string& tokenizer) {
    // the tokenizer's start and end tokens (bytes: BOS 256, EOS 257; GPT-NeoX's BPE: <|endoftext|>)
    const std::unique_ptr<data::Tokenizer> tok = data::load_tokenizer(tokenizer);
    const int64_t eos = tok->end.value_or(0), bos = tok->begin.value_or(int32_t(eos));
    nlohmann::ordered_json config = hf_config_of(cfg, bos, eos); // refuses what transformers cannot load
    std::error_code ec;
    MG_CHECK(!fs::exists(dir, ec) || (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)),
             "export: '{}' exists and is not an empty folder; choose a new folder (nothing was written)", dir);
    fs::create_directories(dir, ec);
    MG_CHECK(!ec, "export: cannot create the folder '{}': {}", dir, ec.message());
    NamedTensors named;
    for (const auto& [name, t] : params) named.emplace_back(nn::mamba_name_to_transformers(name), t);
    save_safetensors(in_dir(dir, kSingle), named, {{"format", "pt"}});
    nlohmann::ordered_json gen;
    gen["_from_model_config"] = true;
    gen["bos_token_id"] = bos;
    gen["eos_token_id"] = eos;
    gen["pad_token_id"] = eos;
    data::write_file_atomic(in_dir(dir, "generation_config.json"), gen.dump(2) + "\n");
    if (!tokenizer.empty())
        data::write_file_atomic(in_dir(dir, "tokenizer.json"),
                                data::read_regular_file(tokenizer, "export: tokenizer", uint64_t(256) << 20));
    // config.json last: a folder without it is visibly incomplete
    data::write_file_atomic(in_dir(dir, "config.json"), config.dump(2) + "\n");
}

} // namespace mg::train
