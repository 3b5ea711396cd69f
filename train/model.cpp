// train/model.cpp: see model.h.
#include "train/model.h"

#include <fmt/format.h>

#include "nn/mamba.h"
#include "nn/transformer.h"

namespace mg::train {

std::unique_ptr<nn::LanguageModel> make_model(const TrainConfig& cfg, Options o, Generator& gen) {
    if (cfg.is_transformer()) return std::make_unique<nn::TransformerLM>(cfg.transformer, o, gen);
    return std::make_unique<nn::MambaLM>(cfg.model, o, gen);
}

std::vector<nn::ParameterSpec> model_parameter_specs(const TrainConfig& cfg) {
    return cfg.is_transformer() ? nn::parameter_specs(cfg.transformer) : nn::parameter_specs(cfg.model);
}

std::string model_summary(const TrainConfig& cfg) {
    if (cfg.is_transformer()) {
        const nn::TransformerConfig& t = cfg.transformer;
        return fmt::format("transformer (GPT-NeoX), {} layers, d_model {}, {} heads of {}, vocab {}", t.n_layer,
                           t.d_model, t.n_head, t.head_dim(), t.padded_vocab());
    }
    const nn::MambaConfig& m = cfg.model;
    return fmt::format("{} layers, d_model {}, d_state {}, vocab {}", m.n_layer, m.d_model, m.d_state, m.padded_vocab());
}

} // namespace mg::train
