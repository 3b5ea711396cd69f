// data/text.cpp: see data/text.h.
#include "data/text.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numbers>

#include "data/read_file.h"
#include "tensor/check.h"
#include "tensor/random.h"

namespace mg::data {

std::vector<int32_t> encode_bytes(std::string_view text) {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = int32_t(static_cast<unsigned char>(text[i]));
    return ids;
}

std::string decode_bytes(std::span<const int32_t> ids) {
    std::string out;
    out.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        const int32_t id = ids[i];
        MG_CHECK(id >= 0 && id < kTextVocab, "decode_bytes: id {} at index {} is not a token (expected 0..255 for a "
                 "byte, {} BOS or {} EOS)", id, i, kTextBos, kTextEos);
        if (id < 256) out.push_back(char(static_cast<unsigned char>(id)));
    }
    return out;
}

TextSplits split_text(std::span<const int32_t> stream, double valid_fraction, double test_fraction) {
    MG_CHECK(valid_fraction >= 0 && test_fraction >= 0 && valid_fraction + test_fraction < 1,
             "split_text: valid_fraction {} and test_fraction {} must be >= 0 with a sum < 1", valid_fraction,
             test_fraction);
    const int64_t n = int64_t(stream.size());
    const int64_t n_test = int64_t(std::floor(double(n) * test_fraction));
    const int64_t n_valid = int64_t(std::floor(double(n) * valid_fraction));
    const int64_t n_train = n - n_valid - n_test;
    TextSplits s;
    s.train.assign(stream.begin(), stream.begin() + n_train);
    s.valid.assign(stream.begin() + n_train, stream.begin() + n_train + n_valid);
    s.test.assign(stream.begin() + n_train + n_valid, stream.end());
    return s;
}

TextCorpus load_text_corpus(const std::string& path, double valid_fraction, double test_fraction,
                            const Tokenizer* tokenizer) {
    MG_CHECK(std::filesystem::exists(path), "text corpus: cannot read '{}': no such file{}", path,
             path.ends_with("kjv.txt") ? " (run `make corpus` to prepare the King James Bible)" : "");
    // a byte becomes a 4-byte token: 1 GiB of text is 4 GiB of tokens
    const std::string text = read_regular_file(path, "text corpus", kMaxCorpusBytes);
    MG_CHECK(!text.empty(), "text corpus: '{}' is empty", path);
    std::vector<int32_t> stream;
    if (tokenizer) {
        stream = tokenizer->stream(text);
    } else {
        stream.reserve(text.size() + 2);
        stream.push_back(kTextBos);
        for (unsigned char c : text) stream.push_back(int32_t(c));
        stream.push_back(kTextEos);
    }
    TextCorpus c;
    c.path = path;
    c.bytes = int64_t(text.size());
    c.splits = split_text(stream, valid_fraction, test_fraction);
    return c;
}

int64_t sample_window_start(int64_t num_tokens, int64_t seq_len, uint64_t seed, uint64_t step, int64_t b,
                            int64_t batch) {
    const uint64_t span = uint64_t(num_tokens - seq_len); // starts 0 .. n-L-1: the window w[0..L] fits
    return int64_t(rng::bits(seed, step * uint64_t(batch) + uint64_t(b), kTextLane) % span);
}

namespace {

// Windows starting at `starts` (each seq_len + 1 tokens inside `tokens`) as a batch.
TextBatch make_text_batch(std::span<const int32_t> tokens, int64_t seq_len, const std::vector<int64_t>& starts,
                          Device device) {
    const int64_t B = int64_t(starts.size()), L = seq_len;
    std::vector<int32_t> in(size_t(B * L)), tgt(size_t(B * L)), pos(size_t(B * L));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t) {
            const size_t i = size_t(b * L + t);
            in[i] = tokens[size_t(starts[size_t(b)] + t)];
            tgt[i] = tokens[size_t(starts[size_t(b)] + t + 1)];
            pos[i] = int32_t(i);
        }
    TextBatch batch;
    batch.inputs = Tensor::from_vector(in, {B, L}, {DType::i32, device});
    batch.targets = Tensor::from_vector(tgt, {B * L}, {DType::i32, device});
    batch.positions = Tensor::from_vector(pos, {B * L}, {DType::i32, device});
    return batch;
}

} // namespace

TextBatch sample_text_batch(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len, uint64_t seed,
                            uint64_t step, Device device) {
    const int64_t n = int64_t(tokens.size());
    MG_CHECK(batch >= 1 && seq_len >= 1, "sample_text_batch: batch {} and seq_len {} must be >= 1", batch, seq_len);
    MG_CHECK(n > seq_len + 1, "sample_text_batch: {} tokens cannot hold a window of seq_len + 1 = {} tokens", n,
             seq_len + 1);
    MG_CHECK(int64_t(int32_t(batch * seq_len)) == batch * seq_len,
             "sample_text_batch: batch {} x seq_len {} positions do not fit i32", batch, seq_len);
    std::vector<int64_t> starts(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) starts[size_t(b)] = sample_window_start(n, seq_len, seed, step, b, batch);
    return make_text_batch(tokens, seq_len, starts, device);
}

int64_t num_text_windows(int64_t num_tokens, int64_t seq_len) {
    MG_CHECK(seq_len >= 1, "num_text_windows: seq_len {} must be >= 1", seq_len);
    return num_tokens > 0 ? (num_tokens - 1) / seq_len : 0;
}

TextBatch text_windows(std::span<const int32_t> tokens, int64_t seq_len, int64_t first, int64_t count,
                       Device device) {
    const int64_t total = num_text_windows(int64_t(tokens.size()), seq_len);
    MG_CHECK(first >= 0 && count >= 1 && first + count <= total,
             "text_windows: windows {}..{} asked, but {} tokens hold {} windows of seq_len {}", first,
             first + count - 1, tokens.size(), total, seq_len);
    MG_CHECK(int64_t(int32_t(count * seq_len)) == count * seq_len,
             "text_windows: {} windows x seq_len {} positions do not fit i32", count, seq_len);
    std::vector<int64_t> starts(static_cast<size_t>(count));
    for (int64_t k = 0; k < count; ++k) starts[size_t(k)] = (first + k) * seq_len;
    return make_text_batch(tokens, seq_len, starts, device);
}

double bits_per_byte(double nats_per_byte) { return nats_per_byte / std::numbers::ln2; }

} // namespace mg::data
