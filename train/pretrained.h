// train/pretrained.h: Mamba model folders as the rest of the field writes them, in and out.
//
// A model folder is what transformers' MambaForCausalLM.save_pretrained writes (the
// state-spaces/mamba-*-hf models), or mamba_ssm's layout with its weights in safetensors:
//   config.json                      the model's hyper-parameters (below)
//   model.safetensors                the weights, or
//   model.safetensors.index.json     {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>"}}
//     + model-0000i-of-0000n.safetensors   (a sharded save; shard files lie in the folder itself)
//   tokenizer.json                   (optional) the tokenizer, read by data/bpe.h; without one the
//                                    model is taken to be byte-level (data/text.h), which generate
//                                    refuses when the vocabularies disagree
// (model.safetensors is read when present, as transformers does, else the index and its shards;
// every tensor must be in the shard the index names, and every name of the index in its shard.)
// Anywhere a checkpoint is taken (eval, generate, info, probe, train --init) a folder may be
// given instead of a mambagrad checkpoint file: checkpoint_config() reads its config as the
// train config below, and load_model() its weights.
//
// ---- config.json -----------------------------------------------------------------------------
// transformers' MambaConfig keys, with mamba_ssm's names accepted as synonyms (the published
// *-hf configs carry both; where both are given they must agree):
//   hidden_size | d_model               -> d_model
//   num_hidden_layers | n_layer         -> n_layer
//   vocab_size                          -> vocab_size: the embedding's rows (transformers pads
//                                          nothing); with mamba_ssm's pad_vocab_size_multiple
//                                          and no model_type (a mamba_ssm folder) the rows are
//                                          vocab_size rounded up to that multiple
//   state_size | ssm_cfg.d_state        -> d_state          conv_kernel | ssm_cfg.d_conv -> d_conv
//   expand | ssm_cfg.expand             -> expand           intermediate_size: must be expand d_model
//   time_step_rank | ssm_cfg.dt_rank    -> dt_rank ("auto" = ceil(d_model / 16))
//   layer_norm_epsilon | norm_epsilon   -> norm_eps
// Required values (what MambaLM computes; anything else is refused, naming the key): model_type
// "mamba", hidden_act "silu", use_bias false, use_conv_bias true (ssm_cfg bias / conv_bias the
// same), rms_norm true, tie_word_embeddings true, ssm_cfg.layer "Mamba1".
// Accepted and not needed to compute the model: residual_in_fp32 and fused_add_norm (our f32
// model keeps the residual stream in f32 either way), the initialisation's keys
// (initializer_range, rescale_prenorm_residual, time_step_min/max/floor/scale/init_scheme,
// ssm_cfg dt_min/dt_max/dt_init/dt_scale/dt_init_floor), runtime switches (use_cache,
// use_mambapy, use_associative_scan, ssm_cfg use_fast_path), the token ids (bos/eos/pad_token_id)
// and bookkeeping (architectures, torch_dtype/dtype, transformers_version, _name_or_path).
// Any other key is an error that names it: a field we do not understand is never ignored.
//
// ---- weights ---------------------------------------------------------------------------------
// transformers' names map onto ours by nn/hf_names.h (backbone.embeddings -> backbone.embedding;
// lm_head.weight, when a file has it, must equal the embedding: MambaLM ties them). F32, F64, BF16
// and F16 tensors are read (and converted to the model's f32); every parameter of the config must be
// there with its shape, and nothing else: a missing, extra or mis-shaped tensor is one error
// naming it and the file. PyTorch pickles (pytorch_model.bin) are refused: safetensors only.
//
// ---- export ----------------------------------------------------------------------------------
// save_model_folder writes what save_pretrained writes for the same weights: config.json with
// transformers' MambaConfig keys (vocab_size = the padded vocabulary, the embedding's rows),
// model.safetensors under transformers' names (no lm_head.weight: tied), generation_config.json,
// and the tokenizer when there is one; bos/eos_token_id are the tokenizer's start and end tokens
// (a byte-level model: 256 and 257, and no tokenizer.json: its ids are the bytes). A model with global selection is refused (transformers'
// MambaForCausalLM has no long convolution on dt: it would load the file and compute another
// model). Every file is written atomically; an existing non-empty folder is not written into.
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "nn/config.h"
#include "nn/module.h"
#include "tensor/device.h"
#include "train/checkpoint.h"

namespace mg::train {

// Whether `path` names a model folder (a directory), as opposed to a checkpoint file.
bool is_model_folder(const std::string& path);

struct ModelFolder {
    std::string dir;
    std::string layout;              // "transformers" (model_type mamba) or "mamba_ssm"
    nn::MambaConfig model;           // from config.json
    std::vector<std::string> files;  // the safetensors files holding the weights
    std::map<std::string, std::string> index; // a sharded folder's weight_map (their name -> file)
    std::string tokenizer;           // dir/tokenizer.json when present, else ""
};

// config.json -> MambaConfig (the rules above); `where` names the file in errors.
nn::MambaConfig mamba_config_from_hf(const nlohmann::json& config, const std::string& where);
// The config.json transformers writes for MambaLM(cfg) (MambaConfig's keys, vocab_size the
// padded vocabulary). Refuses global selection.
nlohmann::ordered_json hf_config_of(const nn::MambaConfig& cfg, int64_t bos_token_id, int64_t eos_token_id);

// Reads config.json and finds the weight files (checking the shard index: every file inside the
// folder and present). Throws mg::Error naming the folder and what is wrong.
ModelFolder read_model_folder(const std::string& dir);

// The train config (JSON, as checkpoint_config gives it) a folder stands for: its model, task lm
// with the folder's tokenizer (bytes when it has none); parse_train_args gives an --init run its
// run_dir, runs/finetune.
nlohmann::json folder_train_config(const ModelFolder& folder);

// The weights under our names, on the host, in the files' dtype, checked against the config:
// every parameter present with its shape, nothing else, all finite.
nn::StateDict load_folder_weights(const ModelFolder& folder);

// The folder's tensors as one header (our names; each entry's byte range is within its own
// file): what info and the checkpoint checks read without loading the weights.
SafetensorsHeader read_folder_header(const ModelFolder& folder);

// Writes a transformers folder at `dir` (created; must not exist or be empty) for a MambaLM of
// `cfg` with parameters `params` (our names, any device), with `tokenizer` (a tokenizer.json
// path, or "") copied in.
void save_model_folder(const std::string& dir, const nn::MambaConfig& cfg, const NamedTensors& params,
                       const std::string& tokenizer = "");

} // namespace mg::train
