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

namespace {

// The tokenizer's sampleable ids, in id order: every draw's candidates.
std::vector<int32_t> candidates_of(const data::Tokenizer& tok) {
    std::vector<int32_t> cand;
    cand.reserve(size_t(tok.vocab_size()));
    for (int32_t id = 0; id < tok.vocab_size(); ++id)
        if (tok.sampleable(id)) cand.push_back(id);
    return cand;
}

int32_t draw_from(std::span<const double> logits, std::vector<int32_t> cand, const GenerateOptions& o, uint64_t seed,
                  uint64_t draw) {
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
    const double u = rng::uniform01(seed, draw, kSampleLane) * sum;
    double acc = 0;
    for (size_t i = 0; i < cand.size(); ++i) {
        acc += p[i];
        if (u < acc) return cand[i];
    }
    return cand.back(); // u within rounding of the total
}

void check_logits(size_t n, const data::Tokenizer& tok) {
    MG_CHECK(int64_t(n) >= tok.vocab_size(), "generate: the model has {} logits, fewer than the {} ids of the tokenizer "
             "({}); is it a language model of this tokenizer?", n, tok.vocab_size(), tok.name());
}

} // namespace

int32_t sample_token(std::span<const double> logits, const data::Tokenizer& tok, const GenerateOptions& o,
                     uint64_t draw) {
    check_logits(logits.size(), tok);
    return draw_from(logits, candidates_of(tok), o, o.seed, draw);
}

std::vector<std::vector<int32_t>> generate_batch(const nn::LanguageModel& model, const data::Tokenizer& tok,
                                                 std::span<const int32_t> prompt, const GenerateOptions& o,
                                                 int64_t num_samples,
                                                 const std::function<void(int64_t, int32_t)>& on_token) {
    validate(o);
    MG_CHECK(num_samples >= 1, "generate: --num_samples is {}, expected an integer >= 1", num_samples);
    MG_CHECK(model.vocab_size() >= tok.vocab_size() && model.vocab_size() < tok.vocab_size() + 64,
             "generate: the model's vocab_size is {}, but the tokenizer ({}) has {} ids; is it this model's tokenizer? "
             "(a model folder without tokenizer.json is read as byte-level; give --tokenizer FILE)", model.vocab_size(),
             tok.name(), tok.vocab_size());
    for (size_t i = 0; i < prompt.size(); ++i)
        MG_CHECK(prompt[i] >= 0 && prompt[i] < tok.vocab_size(), "generate: prompt id {} at index {} is not a token of "
                 "the tokenizer ({}: ids 0..{})", prompt[i], i, tok.name(), tok.vocab_size() - 1);
    const bool begin = tok.begin && (tok.begin_always || prompt.empty());
    MG_CHECK(begin || !prompt.empty(), "generate: an empty prompt needs a start token, and the tokenizer ({}) has "
             "none; give --prompt", tok.name());
    const Device device = model.lm_head_weight().device();
    const int64_t n = num_samples;
    std::unique_ptr<nn::RecurrentState> state = model.make_recurrent_state(n);
    std::vector<double> z; // (n, V) logits of the last step, row-major
    size_t V = 0;
    auto feed = [&](const std::vector<int32_t>& ids) {
        Tensor logits = model.step(Tensor::from_vector(ids, {n}, {DType::i32, device}), *state);
        V = size_t(logits.size(-1));
        z = logits.to(Device::cpu()).to(DType::f64).to_vector<double>(); // the device's bytes once, f32
    };
    if (begin) feed(std::vector<int32_t>(size_t(n), *tok.begin));
    for (int32_t id : prompt) feed(std::vector<int32_t>(size_t(n), id));
    // V = model.vocab_size() >= tok.vocab_size(), checked above
    const std::vector<int32_t> cand = candidates_of(tok);
    std::vector<std::vector<int32_t>> out(static_cast<size_t>(n));
    std::vector<bool> done(static_cast<size_t>(n), false);
    std::vector<int32_t> next(static_cast<size_t>(n), 0);
    int64_t live = n;
    for (int64_t i = 0; i < o.max_new_tokens && live > 0; ++i) {
        for (int64_t b = 0; b < n; ++b) {
            if (done[size_t(b)]) {
                next[size_t(b)] = tok.end ? *tok.end : 0; // fed but never read
                continue;
            }
            // sample b draws from its own stream: seed + b (sample 0 is generate_ids')
            const std::span<const double> row(z.data() + size_t(b) * V, V);
            const int32_t t = draw_from(row, cand, o, o.seed + uint64_t(b), uint64_t(i));
            next[size_t(b)] = t;
            if (tok.end && t == *tok.end) {
                done[size_t(b)] = true;
                --live;
                continue;
            }
            out[size_t(b)].push_back(t);
            if (on_token) on_token(b, t);
        }
        if (i + 1 < o.max_new_tokens && live > 0) feed(next);
    }
    return out;
}

std::vector<int32_t> generate_ids(const nn::LanguageModel& model, const data::Tokenizer& tok,
                                  std::span<const int32_t> prompt, const GenerateOptions& o,
                                  const std::function<void(int32_t)>& on_token) {
    return generate_batch(model, tok, prompt, o, 1, [&](int64_t, int32_t id) {
        if (on_token) on_token(id);
    })[0];
}

} // namespace mg::train
