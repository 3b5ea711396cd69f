// train/info.cpp: see train/info.h.
#include "train/info.h"

#include "train/evaluate.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "tensor/check.h"
#include "train/model.h"
#include "train/pretrained.h"
#include "train/trainer.h"

namespace mg::train {

namespace {

ModelInfo info_of(const TrainConfig& cfg, const std::string& source) {
    ModelInfo info;
    info.source = source;
    info.config = cfg;
    for (const nn::ParameterSpec& p : model_parameter_specs(cfg)) {
        info.parameters.push_back({p.name, p.shape, p.numel(), DType::f32, "", 0});
        info.total += p.numel();
    }
    info.without_global_selection = info.total;
    if (!cfg.is_transformer()) {
        nn::MambaConfig plain = cfg.model;
        plain.global_selection.enabled = false;
        info.without_global_selection = nn::count_parameters(plain);
    }
    info.embedding = info.parameters.front().count; // the input embedding comes first in both models
    return info;
}

std::string global_selection_text(const nn::MambaConfig& c) {
    const nn::GlobalSelection& gs = c.global_selection;
    if (!gs.enabled) return "off";
    int64_t layers = 0;
    for (int64_t l = 0; l < c.n_layer; ++l) layers += gs.applies_to(l);
    return fmt::format("longconv, k_long {}, mode {}, in {} of {} layers{}", gs.k_long, nn::causal_conv_mode_name(gs.mode),
                       layers, c.n_layer, gs.layers.empty() ? " (all)" : fmt::format(" ({})", fmt::join(gs.layers, ", ")));
}

} // namespace

int64_t ModelInfo::bytes_stored() const {
    int64_t b = 0;
    for (const Row& r : parameters) b += r.count * int64_t(r.stored_size ? r.stored_size : dtype_size(r.dtype));
    return b;
}

std::string group_thousands(int64_t v) {
    std::string digits = std::to_string(v < 0 ? -v : v), out;
    for (size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return v < 0 ? "-" + out : out;
}

ModelInfo model_info(const TrainConfig& cfg) { return info_of(cfg, "config"); }

ModelInfo model_info_from_checkpoint(const std::string& path) {
    const bool folder = is_model_folder(path);
    MG_CHECK(folder || std::filesystem::is_regular_file(path), "info: checkpoint '{}' does not exist (or is not a file "
             "or a model folder)", path);
    ModelInfo info = info_of(TrainConfig::from_json(checkpoint_config(path)), path);
    // the checks eval and --resume make, so that info accepts the same files: the header against
    // the config, then the data (checksum, no NaN/Inf) as load_checkpoint reads it
    SafetensorsHeader h = check_checkpoint_header(path, info.config, "info");
    if (folder) load_folder_weights(read_model_folder(path));
    else check_checkpoint_data(path);
    std::map<std::string, const SafetensorsEntry*> by_name;
    for (const SafetensorsEntry& e : h.entries) by_name[e.name] = &e;
    for (ModelInfo::Row& r : info.parameters) {
        const SafetensorsEntry& e = *by_name.at(r.name);
        r.dtype = e.dtype;
        if (e.stored == "BF16" || e.stored == "F16") {
            r.stored = e.stored == "BF16" ? "bf16" : "f16";
            r.stored_size = e.stored_size();
        }
    }
    info.optimizer_tensors =
        std::count_if(h.entries.begin(), h.entries.end(), [](const SafetensorsEntry& e) { return e.name.starts_with("optimizer."); });
    info.state = read_trainer_state(h.metadata, path);
    return info;
}

std::string format_model_info(const ModelInfo& info) {
    const nn::MambaConfig& c = info.config.model;
    const nn::TransformerConfig& t = info.config.transformer;
    const bool transformer = info.config.is_transformer();
    std::string out;
    auto it = std::back_inserter(out);
    if (transformer) {
        fmt::format_to(it, "model ({}): TransformerLM (GPT-NeoX), d_model {}, n_layer {}, n_head {} of {}, d_ff {}, "
                       "rotary on {} of {} dims (base {:g})\n", info.source, t.d_model, t.n_layer, t.n_head,
                       t.head_dim(), t.ff_width(), t.rotary_dims(), t.head_dim(), t.rotary_base);
        fmt::format_to(it, "  vocab {} (padded to {}), layer_norm_eps {:g}, init_std {:g}\n", t.vocab_size,
                       t.padded_vocab(), t.layer_norm_eps, t.init_std);
    } else {
        fmt::format_to(it, "model ({}): MambaLM, d_model {}, n_layer {}, d_inner {}, d_state {}, d_conv {}, dt_rank {}{}\n",
                       info.source, c.d_model, c.n_layer, c.d_inner(), c.d_state, c.d_conv, c.resolved_dt_rank(),
                       c.dt_rank > 0 ? "" : " (auto)");
        fmt::format_to(it, "  vocab {} (padded to {}), norm_eps {:g}, init {}, global selection {}\n", c.vocab_size,
                       c.padded_vocab(), c.norm_eps, nn::init_scheme_name(c.init), global_selection_text(c));
    }
    if (info.state)
        fmt::format_to(it, "  checkpoint at step {} (epoch {}, batch {}), {} optimizer tensors\n", info.state->step,
                       info.state->epoch, info.state->cursor, info.optimizer_tensors);
    size_t wn = 4, ws = 5, wc = 10;
    for (const auto& r : info.parameters) {
        wn = std::max(wn, r.name.size());
        ws = std::max(ws, shape_str(r.shape).size());
        wc = std::max(wc, group_thousands(r.count).size());
    }
    fmt::format_to(it, "\n  {:<{}}  {:<{}}  {:>{}}  {}\n", "name", wn, "shape", ws, "parameters", wc, "dtype");
    for (const auto& r : info.parameters)
        fmt::format_to(it, "  {:<{}}  {:<{}}  {:>{}}  {}\n", r.name, wn, shape_str(r.shape), ws, group_thousands(r.count),
                       wc, r.dtype_text());
    fmt::format_to(it, "\nparameters: {} ({} bytes in fp32", group_thousands(info.total),
                   group_thousands(info.bytes_fp32()));
    if (info.bytes_stored() != info.bytes_fp32()) fmt::format_to(it, ", {} as stored", group_thousands(info.bytes_stored()));
    fmt::format_to(it, ")\n");
    if (transformer) {
        fmt::format_to(it, "  embed_in {} and embed_out {} (not tied); the rest {}\n", group_thousands(info.embedding),
                       group_thousands(info.parameters.back().count),
                       group_thousands(info.total - info.embedding - info.parameters.back().count));
        return out;
    }
    fmt::format_to(it, "  without global selection: {}; global selection adds {}\n",
                   group_thousands(info.without_global_selection),
                   group_thousands(info.total - info.without_global_selection));
    fmt::format_to(it, "  embedding {} (lm_head.weight is tied to it and counted once); the rest {}\n",
                   group_thousands(info.embedding), group_thousands(info.total - info.embedding));
    return out;
}

nlohmann::ordered_json model_info_json(const ModelInfo& info) {
    using ojson = nlohmann::ordered_json;
    ojson params = ojson::array();
    for (const auto& r : info.parameters)
        params.push_back({{"name", r.name}, {"shape", r.shape}, {"count", r.count}, {"dtype", r.dtype_text()}});
    ojson j = {{"source", info.source},
               {"config", info.config.to_json()["model"]},
               {"parameters", params},
               {"total", info.total},
               {"total_without_global_selection", info.without_global_selection},
               {"global_selection", info.total - info.without_global_selection},
               {"embedding", info.embedding},
               {"tied_embeddings", !info.config.is_transformer()},
               {"bytes_fp32", info.bytes_fp32()},
               {"bytes_stored", info.bytes_stored()}};
    if (info.state)
        j["checkpoint"] = {{"step", info.state->step},
                           {"epoch", info.state->epoch},
                           {"cursor", info.state->cursor},
                           {"optimizer_tensors", info.optimizer_tensors}};
    return j;
}

} // namespace mg::train
