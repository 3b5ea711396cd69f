// train/generate.h: sampling text from a language model through its tokenizer (data/tokenizer.h:
// bytes, or a BPE tokenizer.json) in recurrent mode (nn/lm.h: MambaLM::step, or TransformerLM::step
// with its KV cache): one token at a time, O(1) work and memory per token whatever the length so far.
//
// generate_ids: a fresh state for one sequence; the tokenizer's start token first (bytes: BOS,
// always; BPE: <|endoftext|>, only for an empty prompt, as transformers' generate does), then the
// prompt's tokens are fed one by one (the logits after the last one give the first new token);
// then up to max_new_tokens tokens are drawn, each fed back. Drawing stops early at the
// tokenizer's end token (EOS, <|endoftext|>; not returned).
// sample_token, from the logits z of one position (host, f64):
//   candidates: the tokenizer's sampleable ids (bytes: 0..255 and EOS, never BOS; BPE: every id
//     of the tokenizer); never the model's padding ids beyond the tokenizer's vocabulary;
//   temperature 0: the candidate with the largest z (the first one on a tie: greedy, which is
//     transformers' greedy search, torch.argmax taking the first maximum);
//   temperature T > 0: keep the top_k candidates by z (0: all; ties keep the smaller id), draw
//     from softmax(z / T) over them with u = rng::uniform01(seed, draw, kSampleLane) by inverse
//     CDF in id order. So the text is a pure function of (model, tokenizer, prompt, options).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "data/tokenizer.h"
#include "nn/lm.h"

namespace mg::train {

struct GenerateOptions {
    int64_t max_new_tokens = 256;
    double temperature = 1.0; // 0: greedy
    int64_t top_k = 0;        // 0: every candidate
    uint64_t seed = 0;
};

inline constexpr uint64_t kSampleLane = 0x5A3B1E; // the sampler's RNG sub-stream

// Throws mg::Error naming the option when temperature < 0, top_k < 0 or max_new_tokens < 0.
void validate(const GenerateOptions& o);

// One draw (the `draw`-th of a generation) from logits over the model's padded vocabulary.
int32_t sample_token(std::span<const double> logits, const data::Tokenizer& tok, const GenerateOptions& o,
                     uint64_t draw);

// The new tokens (not the prompt, no end token). on_token, when set, sees each one as it is
// drawn. The model's vocabulary must hold the tokenizer's ids; prompt ids must be the tokenizer's.
std::vector<int32_t> generate_ids(const nn::LanguageModel& model, const data::Tokenizer& tok,
                                  std::span<const int32_t> prompt, const GenerateOptions& o,
                                  const std::function<void(int32_t)>& on_token = {});

// num_samples continuations of the same prompt at once, one batch through the model (a state of
// batch num_samples; each step one (num_samples) ids -> (num_samples, V) logits). Sample b draws
// with seed o.seed + b, so sample 0 is generate_ids' text; each stops at its own end token (the
// batch steps on until every sample has stopped or max_new_tokens). on_token sees (b, id).
std::vector<std::vector<int32_t>> generate_batch(const nn::LanguageModel& model, const data::Tokenizer& tok,
                                                 std::span<const int32_t> prompt, const GenerateOptions& o,
                                                 int64_t num_samples,
                                                 const std::function<void(int64_t, int32_t)>& on_token = {});

} // namespace mg::train
