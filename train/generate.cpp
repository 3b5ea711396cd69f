// train/generate.cpp: see train/generate.h.
#include "train/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tensor/check.h"
#include "tensor/random.h"

namespace mg::train {

void validate(const GenerateOptions& o) {
    MG_CHECK(o.max_new_tokens >= 0, "generate: --max_new_tokens is {}, expected an integer >= 0", o.max_new_tokens);
    MG_CHECK(std::isfinite(o.temperature) && o.temperature >= 0,
             "generate: --temperature is {}, expected a number >= 0 (0: greedy)", o.temperature);
    MG_CHECK(o.top_k >= 0, "generate: --top_k is {}, expected an integer >= 0 (0: no limit)", o.top_k);
}

int32_t sample_token(std::span<const double> logits, const data::Tokenizer& tok, const GenerateOptions& o,
                     uint64_t draw) {
    MG_CHECK(int64_t(logits.size()) >= tok.vocab_size(), "generate: the model has {} logits, fewer than the {} ids of "
             "the tokenizer ({}); is it a language model of this tokenizer?", logits.size(), tok.vocab_size(), tok.name());
    std::vector<int32_t> cand;
    cand.reserve(size_t(tok.vocab_size()));
    for (int32_t id = 0; id < tok.vocab_size(); ++id)
        if (tok.sampleable(id)) cand.push_back(id);
    auto better = [&](int32_t a, int32_t b) { // larger logit first; the smaller id on a tie
        const double za = logits[size_t(a)], zb = logits[size_t(b)];
        return za > zb || (za == zb && a < b);
    };
    if (o.temperature == 0) return *std::min_element(cand.begin(), cand.end(), better);
    if (o.top_k > 0 && o.top_k < int64_t(cand.size())) {
        std::partial_sort(cand.begin(), cand.begin() + o.top_k, cand.end(), better);
        cand.resize(size_t(o.top_k));
        std::sort(cand.begin(), cand.end());
    }
    double zmax = -INFINITY;
    for (int32_t c : cand) zmax = std::max(zmax, logits[size_t(c)]);
    std::vector<double> p(cand.size());
    double sum = 0;
    for (size_t i = 0; i < cand.size(); ++i) sum += p[i] = std::exp((logits[size_t(cand[i])] - zmax) / o.temperature);
    const double u = rng::uniform01(o.seed, draw, kSampleLane) * sum;
    double acc = 0;
    for (size_t i = 0; i < cand.size(); ++i) {
        acc += p[i];
        if (u < acc) return cand[i];
    }
    return cand.back(); // u within rounding of the total
}

std::vector<int32_t> generate_ids(const nn::LanguageModel& model, const data::Tokenizer& tok,
                                  std::span<const int32_t> prompt, const GenerateOptions& o,
                                  const std::function<void(int32_t)>& on_token) {
    validate(o);
    MG_CHECK(model.vocab_size() >= tok.vocab_size(),
             "generate: the model's vocab_size is {}, but the tokenizer ({}) has {} ids; is the checkpoint a language "
             "model of this tokenizer?", model.vocab_size(), tok.name(), tok.vocab_size());
    for (size_t i = 0; i < prompt.size(); ++i)
        MG_CHECK(prompt[i] >= 0 && prompt[i] < tok.vocab_size(), "generate: prompt id {} at index {} is not a token of "
                 "the tokenizer ({}: ids 0..{})", prompt[i], i, tok.name(), tok.vocab_size() - 1);
    const bool begin = tok.begin && (tok.begin_always || prompt.empty());
    MG_CHECK(begin || !prompt.empty(), "generate: an empty prompt needs a start token, and the tokenizer ({}) has "
             "none; give --prompt", tok.name());
    const Device device = model.lm_head_weight().device();
    std::unique_ptr<nn::RecurrentState> state = model.make_recurrent_state(1);
    auto feed = [&](int32_t id) {
        Tensor logits = model.step(Tensor::from_vector(std::vector<int32_t>{id}, {1}, {DType::i32, device}), *state);
        return logits.to(DType::f64).to(Device::cpu()).to_vector<double>();
    };
    std::vector<double> z;
    if (begin) z = feed(*tok.begin);
    for (int32_t id : prompt) z = feed(id);
    std::vector<int32_t> out;
    for (int64_t i = 0; i < o.max_new_tokens; ++i) {
        const int32_t next = sample_token(z, tok, o, uint64_t(i));
        if (tok.end && next == *tok.end) break;
        out.push_back(next);
        if (on_token) on_token(next);
        if (i + 1 < o.max_new_tokens) z = feed(next);
    }
    return out;
}

} // namespace mg::train
