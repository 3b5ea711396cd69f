// nn/hf_names.cpp: see hf_names.h.
#include "nn/hf_names.h"

#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tensor/check.h"

namespace mg::nn {

namespace {
const std::string kTheirEmbedding = "backbone.embeddings.";
const std::string kOurEmbedding = "backbone.embedding.";
} // namespace

std::string gpt_neox_name_from_transformers(const std::string& name) {
    return name == "lm_head.weight" ? "embed_out.weight" : name;
}

StateDict from_transformers_gpt_neox(const StateDict& dict) {
    StateDict out;
    for (const auto& [name, t] : dict) {
        const std::string ours = gpt_neox_name_from_transformers(name);
        MG_CHECK(!out.count(ours), "from_transformers_gpt_neox: both lm_head.weight and embed_out.weight are present");
        out[ours] = t;
    }
    return out;
}

std::string mamba_name_from_transformers(const std::string& name) {
    if (name.rfind(kTheirEmbedding, 0) == 0) return kOurEmbedding + name.substr(kTheirEmbedding.size());
    return name;
}

std::string mamba_name_to_transformers(const std::string& name) {
    if (name.rfind(kOurEmbedding, 0) == 0) return kTheirEmbedding + name.substr(kOurEmbedding.size());
    return name;
}

StateDict from_transformers_mamba(const StateDict& dict) {
    StateDict out;
    for (const auto& [name, t] : dict) {
        if (name == "lm_head.weight") continue; // checked below
        out[mamba_name_from_transformers(name)] = t;
    }
    auto head = dict.find("lm_head.weight");
    auto emb = out.find(kOurEmbedding + "weight");
    if (head != dict.end() && emb != out.end()) {
        bool tied = head->second.shape() == emb->second.shape();
        if (tied) {
            Tensor diff = head->second - emb->second;
            tied = max(diff * diff).item() == 0.0;
        }
        MG_CHECK(tied, "from_transformers_mamba: lm_head.weight {} differs from backbone.embeddings.weight {}; "
                 "MambaLM ties the output head to the embedding", head->second.desc(), emb->second.desc());
    }
    return out;
}

} // namespace mg::nn
