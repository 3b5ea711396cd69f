// train/convert.cpp: see convert.h.
#include "train/convert.h"

#include <filesystem>

#include "tensor/check.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/pretrained.h"

namespace mg::train {

ImportedFolder import_model_folder(const std::string& dir, const std::string& out) {
    MG_CHECK(is_model_folder(dir), "convert --from hf: '{}' is not a folder", dir);
    const ModelFolder folder = read_model_folder(dir);
    const nn::StateDict dict = load_folder_weights(folder);
    ImportedFolder r{TrainConfig::from_json(folder_train_config(folder)), folder.layout, folder.tokenizer};
    NamedTensors params;
    for (const nn::ParameterSpec& p : nn::parameter_specs(r.config.model))
        params.emplace_back(p.name, dict.at(p.name).to(DType::f32));
    save_checkpoint(out, params, nullptr, TrainerState{}, r.config.to_json().dump(),
                    {{"mambagrad.source", std::filesystem::absolute(dir).string()}});
    return r;
}

ExportedFolder export_model_folder(const std::string& checkpoint, const std::string& out) {
    LoadedModel m = load_model(checkpoint, "cpu");
    MG_CHECK(!m.config.is_transformer(), "convert --to hf: '{}' holds a transformer (model.arch transformer); export "
             "writes transformers' MambaForCausalLM only", checkpoint);
    const std::string tokenizer = m.config.task.is_lm() ? m.config.task.tokenizer : "";
    save_model_folder(out, m.config.model, m.model->named_parameters(), tokenizer);
    return {!tokenizer.empty()};
}

} // namespace mg::train
