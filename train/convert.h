// train/convert.h: `mambagrad convert`, a Mamba between mambagrad's checkpoint and transformers'
// MambaForCausalLM folder (the folder format itself is train/pretrained.h).
//
//   import_model_folder(DIR, OUT)    the folder's weights (f32) and its config (the model; task lm with
//                                    the folder's tokenizer) as one mambagrad checkpoint, written
//                                    atomically; metadata mambagrad.source = the folder's absolute path
//   export_model_folder(CKPT, OUT)   a checkpoint (or a folder) as a new folder that
//                                    MambaForCausalLM.from_pretrained loads, with tokenizer.json when
//                                    the model is a language model of a BPE tokenizer
//
// Refused: a source that is not a folder (import); a transformer or a model with global selection
// (export: transformers' Mamba has neither).
#pragma once

#include <string>

#include "train/config.h"

namespace mg::train {

struct ImportedFolder {
    TrainConfig config;    // what the checkpoint's metadata holds
    std::string layout;    // "transformers" or "mamba_ssm" (ModelFolder::layout)
    std::string tokenizer; // the folder's tokenizer.json, or ""
};
ImportedFolder import_model_folder(const std::string& dir, const std::string& out);

struct ExportedFolder {
    bool wrote_tokenizer = false;
};
ExportedFolder export_model_folder(const std::string& checkpoint, const std::string& out);

} // namespace mg::train
