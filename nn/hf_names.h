// nn/hf_names.h: parameter names of transformers' models mapped onto ours.
//
// TransformerLM uses transformers' GPTNeoXForCausalLM names as they are, except that
// transformers 5 calls the output embedding lm_head.weight where Pythia's checkpoints (and
// transformers 4) say embed_out.weight: from_transformers_gpt_neox accepts either. MambaLM uses
// mamba_ssm's names, which differ from transformers' MambaForCausalLM in one prefix:
//   transformers                      mambagrad (mamba_ssm)
//   backbone.embeddings.weight        backbone.embedding.weight
//   lm_head.weight                    (tied to the embedding: not a parameter of its own)
// Everything else (backbone.layers.{i}.mixer.*, backbone.layers.{i}.norm.weight,
// backbone.norm_f.weight) is the same.
#pragma once
#include <string>

#include "nn/module.h"

namespace mg::nn {

// A transformers GPTNeoXForCausalLM state dict for TransformerLM::load_state_dict
// (lm_head.weight -> embed_out.weight; everything else as it is).
StateDict from_transformers_gpt_neox(const StateDict& dict);
// Our name of a transformers GPTNeoXForCausalLM parameter.
std::string gpt_neox_name_from_transformers(const std::string& name);

// Our name of a transformers MambaForCausalLM parameter, and back.
std::string mamba_name_from_transformers(const std::string& name);
std::string mamba_name_to_transformers(const std::string& name);
// A transformers MambaForCausalLM state dict renamed for MambaLM::load_state_dict; a tied
// lm_head.weight is dropped (an untied one, different from the embedding, is an error: MambaLM
// ties them).
StateDict from_transformers_mamba(const StateDict& dict);

} // namespace mg::nn
