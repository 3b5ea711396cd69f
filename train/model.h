// train/model.h: the model a TrainConfig describes (model.arch: a MambaLM or a TransformerLM),
// built, listed and described in one place for the trainer, evaluation, generation, info and
// the checkpoint checks.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/config.h"
#include "nn/lm.h"
#include "train/config.h"

namespace mg::train {

// A fresh model of cfg's architecture and config, its parameters in `o`, initialised from gen.
std::unique_ptr<nn::LanguageModel> make_model(const TrainConfig& cfg, Options o, Generator& gen);
// Its parameters' names and shapes, from the config alone (nn::parameter_specs of either).
std::vector<nn::ParameterSpec> model_parameter_specs(const TrainConfig& cfg);
// For the trainer's first line: "2 layers, d_model 64, d_state 16, vocab 56" (Mamba) or
// "transformer (GPT-NeoX), 2 layers, d_model 64, 2 heads of 32, vocab 56"; vocab padded.
std::string model_summary(const TrainConfig& cfg);

} // namespace mg::train
