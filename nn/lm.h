// nn/lm.h: what the trainer, evaluation and generation need of a language model, whichever its
// architecture: MambaLM (nn/mamba.h) and TransformerLM (nn/transformer.h) implement it.
//
//   forward(ids)        i32 (B, L) -> logits (B, L, V)
//   hidden_states(ids)  (B, L, d): the last hidden states, before the output head, so a loss
//                       can compute logits only where there are labels (cross_entropy_indexed)
//   lm_head_weight()    (V, d): the output head (MambaLM: the tied embedding)
//   make_recurrent_state(B) + step(ids (B), state) -> logits (B, V): one token at a time
//                       (Mamba: conv and SSM states; Transformer: a KV cache), equal to the
//                       parallel forward
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>

#include "nn/module.h"

namespace mg::nn {

// The recurrent state of any LanguageModel; each model derives its own.
struct RecurrentState {
    virtual ~RecurrentState() = default;
    int64_t batch = 0;
    int64_t position = 0; // tokens consumed so far
};

class LanguageModel : public Module {
public:
    virtual std::string_view arch() const = 0; // "mamba" or "transformer"
    virtual Tensor forward(const Tensor& ids) const = 0;
    virtual Tensor hidden_states(const Tensor& ids) const = 0;
    virtual const Tensor& lm_head_weight() const = 0;
    virtual int64_t vocab_size() const = 0; // the config's vocabulary (before padding)
    // Dropout masks (flashlongconv's) are drawn from gen; models without dropout ignore it.
    virtual void set_dropout_generator(Generator* /*gen*/) {}
    virtual std::unique_ptr<RecurrentState> make_recurrent_state(int64_t batch) const = 0;
    // Throws mg::Error if `state` was made by a model of another architecture.
    virtual Tensor step(const Tensor& ids, RecurrentState& state) const = 0;
};

} // namespace mg::nn
