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
const std::vector<std::string> kGsKeys = {"enabled", "kind", "k_long", "layers", "mode", "gate", "gate_input"};

template <typename E> struct Named {
    E value;
    std::string_view name;
};
constexpr Named<InitScheme> kInits[] = {{InitScheme::mamba, "mamba"}, {InitScheme::paper_code, "paper-code"}};
constexpr Named<GlobalSelectionKind> kKinds[] = {{GlobalSelectionKind::longconv, "longconv"},
                                                 {GlobalSelectionKind::flashlongconv, "flashlongconv"}};
constexpr Named<GateFunction> kGates[] = {{GateFunction::silu, "silu"}, {GateFunction::sigmoid, "sigmoid"}};
constexpr Named<GateInput> kGateInputs[] = {
    {GateInput::raw, "raw"}, {GateInput::normalized, "normalized"}, {GateInput::detached, "detached"}};
constexpr Named<CausalConvMode> kModes[] = {
    {CausalConvMode::automatic, "auto"}, {CausalConvMode::direct, "direct"}, {CausalConvMode::fft, "fft"}};

template <typename E, size_t M> std::string_view name_of(const Named<E> (&table)[M], E v) {
    for (const auto& e : table)
        if (e.value == v) return e.name;
    return "?";
}

// The enum named by key's value (one of the table's names), into out; absent: out unchanged.
template <typename E, size_t M> void read_enum(const JsonSection& s, const std::string& key, const Named<E> (&table)[M], E& out) {
    const json* v = s.find(key);
    if (!v) return;
    std::vector<std::string> allowed;
    for (const auto& e : table) allowed.emplace_back(e.name);
    const std::string name = s.choice(key, *v, allowed);
    for (const auto& e : table)
        if (e.name == name) out = e.value;
}

} // namespace

std::string_view init_scheme_name(InitScheme s) { return name_of(kInits, s); }
std::string_view gate_function_name(GateFunction g) { return name_of(kGates, g); }
std::string_view gate_input_name(GateInput g) { return name_of(kGateInputs, g); }
std::string_view causal_conv_mode_name(CausalConvMode m) { return name_of(kModes, m); }

bool GlobalSelection::applies_to(int64_t layer) const {
    return enabled && (layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end());
}

int64_t round_up_vocab(int64_t vocab, int64_t multiple) {
    const int64_t m = std::max<int64_t>(multiple, 1);
    return (vocab + m - 1) / m * m;
}

void check_positive(const std::string& where, const std::string& prefix, const char* key, int64_t v) {
    MG_CHECK(v > 0, "{}: {}{} = {}, expected a positive integer", where, prefix, key, v);
    // far above any model (mamba-2.8b: d_model 2560, 64 layers; vocabularies ~256k), and low enough
    // that products of sizes cannot overflow or describe terabytes before anything is allocated
    MG_CHECK(v <= kMaxModelSize, "{}: {}{} = {}, expected at most {}", where, prefix, key, v, kMaxModelSize);
}

int64_t MambaConfig::padded_vocab() const { return round_up_vocab(vocab_size, pad_vocab_size_multiple); }

void MambaConfig::validate(const std::string& where, const std::string& prefix) const {
    auto positive = [&](const char* key, int64_t v) { check_positive(where, prefix, key, v); };
    positive("d_model", d_model);
    positive("n_layer", n_layer);
    positive("vocab_size", vocab_size);
    positive("pad_vocab_size_multiple", pad_vocab_size_multiple);
    positive("d_state", d_state);
    positive("d_conv", d_conv);
    positive("expand", expand);
    MG_CHECK(dt_rank >= 0, "{}: {}dt_rank = {}, expected a positive integer or \"auto\"", where, prefix, dt_rank);
    MG_CHECK(norm_eps > 0, "{}: {}norm_eps = {}, expected > 0", where, prefix, norm_eps);
    const GlobalSelection& gs = global_selection;
    MG_CHECK(gs.k_long > 0, "{}: {}global_selection.k_long = {}, expected a positive integer", where, prefix,
             gs.k_long);
    std::set<int64_t> seen;
    for (int64_t l : gs.layers) {
        MG_CHECK(l >= 0 && l < n_layer, "{}: {}global_selection.layers holds {}, expected layer indices in [0, {})",
                 where, prefix, l, n_layer);
        MG_CHECK(seen.insert(l).second, "{}: {}global_selection.layers lists layer {} twice", where, prefix, l);
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

nlohmann::ordered_json MambaConfig::to_json() const {
    using ojson = nlohmann::ordered_json;
    const GlobalSelection& gs = global_selection;
    ojson g = {{"enabled", gs.enabled},
               {"kind", name_of(kKinds, gs.kind)},
               {"k_long", gs.k_long},
               {"layers", gs.layers.empty() ? ojson("all") : ojson(gs.layers)},
               {"mode", name_of(kModes, gs.mode)},
               {"gate", name_of(kGates, gs.gate)},
               {"gate_input", name_of(kGateInputs, gs.gate_input)}};
    return ojson{{"d_model", d_model},
                 {"n_layer", n_layer},
                 {"vocab_size", vocab_size},
                 {"pad_vocab_size_multiple", pad_vocab_size_multiple},
                 {"d_state", d_state},
                 {"d_conv", d_conv},
                 {"expand", expand},
                 {"dt_rank", dt_rank > 0 ? ojson(dt_rank) : ojson("auto")},
                 {"norm_eps", norm_eps},
                 {"init", name_of(kInits, init)},
                 {"global_selection", g}};
}

MambaConfig MambaConfig::from_json(const nlohmann::json& j, const std::string& where, const std::string& prefix) {
    JsonSection s(j, where, prefix, kKeys);
    MambaConfig c;
    if (const json* v = s.find("preset")) c = preset(s.choice("preset", *v, {"zoology", "tiny", "130m"}));
    s.integer("d_model", c.d_model, 1);
    s.integer("n_layer", c.n_layer, 1);
    s.integer("vocab_size", c.vocab_size, 1);
    s.integer("pad_vocab_size_multiple", c.pad_vocab_size_multiple, 1);
    s.integer("d_state", c.d_state, 1);
    s.integer("d_conv", c.d_conv, 1);
    s.integer("expand", c.expand, 1);
    if (const json* v = s.find("dt_rank")) {
        if (v->is_string() && v->get<std::string>() == "auto") c.dt_rank = 0;
        else if (v->is_number_integer() && v->get<int64_t>() > 0) c.dt_rank = v->get<int64_t>();
        else s.fail("dt_rank", *v, "\"auto\" or an integer >= 1");
    }
    s.number("norm_eps", c.norm_eps, 1e-300, 1.0, "in (0, 1]");
    read_enum(s, "init", kInits, c.init);
    if (const json* gj = s.find("global_selection")) {
        JsonSection g(*gj, where, prefix + "global_selection.", kGsKeys);
        GlobalSelection& gs = c.global_selection;
        g.boolean("enabled", gs.enabled);
        read_enum(g, "kind", kKinds, gs.kind);
        g.integer("k_long", gs.k_long, 1);
        read_enum(g, "mode", kModes, gs.mode);
        read_enum(g, "gate", kGates, gs.gate);
        read_enum(g, "gate_input", kGateInputs, gs.gate_input);
        if (const json* v = g.find("layers")) {
            if (v->is_string() && v->get<std::string>() == "all") gs.layers.clear();
            else {
                if (!v->is_array() || v->empty()) g.fail("layers", *v, "\"all\" or a non-empty list of layer indices");
                gs.layers.clear();
                for (const json& e : *v) {
                    if (!e.is_number_integer()) g.fail("layers", *v, "\"all\" or a non-empty list of layer indices");
                    gs.layers.push_back(e.get<int64_t>());
                }
            }
        }
    }
    c.validate(where, prefix);
    return c;
}

MambaConfig MambaConfig::parse(std::string_view text) { return from_json(parse_json(text, kWhere)); }

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
