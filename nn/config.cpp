// nn/config.cpp: see config.h.
#include "nn/config.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "tensor/check.h"
#include "tensor/json.h"

namespace mg::nn {

using nlohmann::json;

namespace {

constexpr const char* kWhere = "model config";

const std::vector<std::string> kKeys = {"preset",   "d_model", "n_layer",  "vocab_size", "pad_vocab_size_multiple",
                                        "d_state",  "d_conv",  "expand",   "dt_rank",    "norm_eps",
                                        "init",     "global_selection"};
const std::vector<std::string> kGsKeys = {"enabled", "kind", "k_long", "layers", "mode", "gate"};

template <typename E> struct Named {
    E value;
    std::string_view name;
};
constexpr Named<InitScheme> kInits[] = {{InitScheme::mamba, "mamba"}, {InitScheme::paper_code, "paper-code"}};
constexpr Named<GlobalSelectionKind> kKinds[] = {{GlobalSelectionKind::longconv, "longconv"},
                                                 {GlobalSelectionKind::flashlongconv, "flashlongconv"}};
constexpr Named<GateFunction> kGates[] = {{GateFunction::silu, "silu"}, {GateFunction::sigmoid, "sigmoid"}};
constexpr Named<CausalConvMode> kModes[] = {
    {CausalConvMode::automatic, "auto"}, {CausalConvMode::direct, "direct"}, {CausalConvMode::fft, "fft"}};

template <typename E, size_t M> std::string_view name_of(const Named<E> (&table)[M], E v) {
    for (const auto& e : table)
        if (e.value == v) return e.name;
    return "?";
}

template <typename E, size_t M> E parse_enum(const Named<E> (&table)[M], const json& j, const std::string& key) {
    std::vector<std::string_view> allowed;
    for (const auto& e : table) allowed.push_back(e.name);
    MG_CHECK(j.is_string(), "{}: {} is {}, expected a string, one of: {}", kWhere, key, json_excerpt(j),
             fmt::join(allowed, ", "));
    std::string s = j.get<std::string>();
    for (const auto& e : table)
        if (e.name == s) return e.value;
    throw Error(fmt::format("{}: {} is '{}', expected one of: {}", kWhere, key, s, fmt::join(allowed, ", ")));
}

void check_keys(const json& j, const std::vector<std::string>& allowed, const std::string& where) {
    MG_CHECK(j.is_object(), "{}: {} is {}, expected a JSON object", kWhere, where, json_excerpt(j));
    for (const auto& [key, v] : j.items())
        MG_CHECK(std::find(allowed.begin(), allowed.end(), key) != allowed.end(),
                 "{}: unknown key '{}' in {}; allowed keys: {}", kWhere, key, where, fmt::join(allowed, ", "));
}

int64_t get_int(const json& j, const std::string& key) {
    MG_CHECK(j.is_number_integer(), "{}: {} is {}, expected an integer", kWhere, key, json_excerpt(j));
    return j.get<int64_t>();
}

} // namespace

std::string_view init_scheme_name(InitScheme s) { return name_of(kInits, s); }
std::string_view gate_function_name(GateFunction g) { return name_of(kGates, g); }
std::string_view causal_conv_mode_name(CausalConvMode m) { return name_of(kModes, m); }

bool GlobalSelection::applies_to(int64_t layer) const {
    return enabled && (layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end());
}

int64_t MambaConfig::padded_vocab() const {
    int64_t m = std::max<int64_t>(pad_vocab_size_multiple, 1);
    return (vocab_size + m - 1) / m * m;
}

void MambaConfig::validate() const {
    auto positive = [](const char* key, int64_t v) {
        MG_CHECK(v > 0, "{}: {} = {}, expected a positive integer", kWhere, key, v);
    };
    positive("d_model", d_model);
    positive("n_layer", n_layer);
    positive("vocab_size", vocab_size);
    positive("pad_vocab_size_multiple", pad_vocab_size_multiple);
    positive("d_state", d_state);
    positive("d_conv", d_conv);
    positive("expand", expand);
    MG_CHECK(dt_rank >= 0, "{}: dt_rank = {}, expected a positive integer or \"auto\"", kWhere, dt_rank);
    MG_CHECK(norm_eps > 0, "{}: norm_eps = {}, expected > 0", kWhere, norm_eps);
    const GlobalSelection& gs = global_selection;
    MG_CHECK(gs.k_long > 0, "{}: global_selection.k_long = {}, expected a positive integer", kWhere, gs.k_long);
    std::set<int64_t> seen;
    for (int64_t l : gs.layers) {
        MG_CHECK(l >= 0 && l < n_layer, "{}: global_selection.layers holds {}, expected layer indices in [0, {})",
                 kWhere, l, n_layer);
        MG_CHECK(seen.insert(l).second, "{}: global_selection.layers lists layer {} twice", kWhere, l);
    }
}

MambaConfig MambaConfig::preset(std::string_view name, int64_t d_model) {
    MambaConfig c;
    if (name == "zoology") {
        c.d_model = d_model > 0 ? d_model : 128;
        c.n_layer = 2;
        c.vocab_size = 8192;
    } else if (name == "tiny") {
        c.d_model = 256;
        c.n_layer = 8;
        c.vocab_size = 20480;
        c.dt_rank = 32; // HF mamba-tiny's time_step_rank (not ceil(256/16) = 16)
    } else if (name == "130m") {
        c.d_model = 768;
        c.n_layer = 24;
        c.vocab_size = 50280;
    } else {
        throw Error(fmt::format("{}: preset is '{}', expected one of: zoology, tiny, 130m", kWhere, name));
    }
    MG_CHECK(d_model <= 0 || name == "zoology" || d_model == c.d_model,
             "{}: preset '{}' has d_model {}; only the zoology preset takes a d_model ({} given)", kWhere, name,
             c.d_model, d_model);
    return c;
}

std::string MambaConfig::to_json() const {
    const GlobalSelection& gs = global_selection;
    json g = {{"enabled", gs.enabled},
              {"kind", name_of(kKinds, gs.kind)},
              {"k_long", gs.k_long},
              {"layers", gs.layers.empty() ? json("all") : json(gs.layers)},
              {"mode", name_of(kModes, gs.mode)},
              {"gate", name_of(kGates, gs.gate)}};
    json j = {{"d_model", d_model},
              {"n_layer", n_layer},
              {"vocab_size", vocab_size},
              {"pad_vocab_size_multiple", pad_vocab_size_multiple},
              {"d_state", d_state},
              {"d_conv", d_conv},
              {"expand", expand},
              {"dt_rank", dt_rank > 0 ? json(dt_rank) : json("auto")},
              {"norm_eps", norm_eps},
              {"init", name_of(kInits, init)},
              {"global_selection", g}};
    return j.dump(2);
}

MambaConfig MambaConfig::from_json(std::string_view text) {
    const json j = parse_json(text, kWhere);
    check_keys(j, kKeys, "the model config");
    MambaConfig c;
    if (j.contains("preset")) {
        MG_CHECK(j["preset"].is_string(), "{}: preset is {}, expected a string, one of: zoology, tiny, 130m", kWhere,
                 json_excerpt(j["preset"]));
        c = preset(j["preset"].get<std::string>());
    }
    auto set_int = [&](const char* key, int64_t& field) {
        if (j.contains(key)) field = get_int(j[key], key);
    };
    set_int("d_model", c.d_model);
    set_int("n_layer", c.n_layer);
    set_int("vocab_size", c.vocab_size);
    set_int("pad_vocab_size_multiple", c.pad_vocab_size_multiple);
    set_int("d_state", c.d_state);
    set_int("d_conv", c.d_conv);
    set_int("expand", c.expand);
    if (j.contains("dt_rank")) {
        const json& v = j["dt_rank"];
        if (v.is_string() && v.get<std::string>() == "auto") c.dt_rank = 0;
        else {
            MG_CHECK(v.is_number_integer() && v.get<int64_t>() > 0,
                     "{}: dt_rank is {}, expected \"auto\" or a positive integer", kWhere, json_excerpt(v));
            c.dt_rank = v.get<int64_t>();
        }
    }
    if (j.contains("norm_eps")) {
        MG_CHECK(j["norm_eps"].is_number(), "{}: norm_eps is {}, expected a number", kWhere, json_excerpt(j["norm_eps"]));
        c.norm_eps = j["norm_eps"].get<double>();
    }
    if (j.contains("init")) c.init = parse_enum(kInits, j["init"], "init");
    if (j.contains("global_selection")) {
        const json& g = j["global_selection"];
        check_keys(g, kGsKeys, "global_selection");
        GlobalSelection& gs = c.global_selection;
        if (g.contains("enabled")) {
            MG_CHECK(g["enabled"].is_boolean(), "{}: global_selection.enabled is {}, expected true or false", kWhere,
                     json_excerpt(g["enabled"]));
            gs.enabled = g["enabled"].get<bool>();
        }
        if (g.contains("kind")) gs.kind = parse_enum(kKinds, g["kind"], "global_selection.kind");
        if (g.contains("k_long")) gs.k_long = get_int(g["k_long"], "global_selection.k_long");
        if (g.contains("mode")) gs.mode = parse_enum(kModes, g["mode"], "global_selection.mode");
        if (g.contains("gate")) gs.gate = parse_enum(kGates, g["gate"], "global_selection.gate");
        if (g.contains("layers")) {
            const json& v = g["layers"];
            if (v.is_string() && v.get<std::string>() == "all") gs.layers.clear();
            else {
                MG_CHECK(v.is_array() && !v.empty(),
                         "{}: global_selection.layers is {}, expected \"all\" or a non-empty list of layer indices",
                         kWhere, json_excerpt(v));
                gs.layers.clear();
                for (const json& e : v) gs.layers.push_back(get_int(e, "an entry of global_selection.layers"));
            }
        }
    }
    c.validate();
    return c;
}

std::vector<ParameterSpec> parameter_specs(const MambaConfig& c) {
    c.validate();
    const int64_t d = c.d_model, D = c.d_inner(), R = c.resolved_dt_rank(), N = c.d_state, k = c.d_conv;
    std::vector<ParameterSpec> out = {{"backbone.embedding.weight", {c.padded_vocab(), d}}};
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const std::string p = "backbone.layers." + std::to_string(l) + ".";
        auto add = [&](const char* name, Shape shape) { out.push_back({p + name, std::move(shape)}); };
        add("mixer.A_log", {D, N});
        add("mixer.D", {D});
        add("mixer.in_proj.weight", {2 * D, d});
        add("mixer.conv1d.weight", {D, 1, k});
        add("mixer.conv1d.bias", {D});
        if (c.global_selection.applies_to(l)) {
            const int64_t K = c.global_selection.k_long;
            if (c.global_selection.kind == GlobalSelectionKind::longconv) {
                add("mixer.long_conv.weight", {D, 1, K});
                add("mixer.long_conv.bias", {D});
            } else { // flashlongconv (nn/layers.h FlashLongConv)
                add("mixer.long_conv.D", {1, D});
                add("mixer.long_conv.kernel", {1, D, K});
                add("mixer.long_conv.output_linear.weight", {2 * D, D});
                add("mixer.long_conv.output_linear.bias", {2 * D});
            }
        }
        add("mixer.x_proj.weight", {R + 2 * N, D});
        add("mixer.dt_proj.weight", {D, R});
        add("mixer.dt_proj.bias", {D});
        add("mixer.out_proj.weight", {d, D});
        add("norm.weight", {d});
    }
    out.push_back({"backbone.norm_f.weight", {d}});
    return out;
}

int64_t count_parameters(const MambaConfig& c) {
    int64_t total = 0;
    for (const ParameterSpec& p : parameter_specs(c)) total += p.numel();
    return total;
}

} // namespace mg::nn
