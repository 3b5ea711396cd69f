// tests/test_text.cpp: byte-level LM data (data/text.h): the tokenizer round-trips every byte, the
// split is contiguous, disjoint and deterministic, batches are windows of the text with the
// targets shifted by one and a pure function of (seed, step), the evaluation tiling scores each
// token once, and bits per byte is nats / ln 2.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <set>

#include "data/text.h"
#include "tests/helpers.h"

using namespace mg;
using namespace mg::data;

namespace {

std::vector<int32_t> ints(const Tensor& t) { return t.to(Device::cpu()).to_vector<int32_t>(); }

// 0, 1, 2, ...: a stream where a token's value is its position, so windows show where they start.
std::vector<int32_t> iota_stream(int64_t n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = int32_t(i);
    return v;
}

} // namespace

TEST_CASE("text: every byte round-trips; specials decode to nothing; bad ids are errors", "[text]") {
    std::string all;
    for (int c = 0; c < 256; ++c) all.push_back(char(c));
    all += "\xff\xfe invalid UTF-8 \xc3( and valid \xc3\xa9"; // still bytes, still exact
    const std::vector<int32_t> ids = encode_bytes(all);
    REQUIRE(ids.size() == all.size());
    for (int c = 0; c < 256; ++c) CHECK(ids[size_t(c)] == c);
    CHECK(decode_bytes(ids) == all);
    CHECK(encode_bytes("").empty());

    std::vector<int32_t> with_specials = {kTextBos, 'h', 'i', kTextEos};
    CHECK(decode_bytes(with_specials) == "hi");
    CHECK(kTextVocab == 258);
    std::vector<int32_t> bad = {'a', 258};
    REQUIRE_ERROR_WITH(decode_bytes(bad), "decode_bytes", "id 258 at index 1");
    bad = {-1};
    REQUIRE_ERROR_WITH(decode_bytes(bad), "id -1 at index 0");
}

TEST_CASE("text: the split is contiguous, disjoint, complete and deterministic", "[text]") {
    const std::vector<int32_t> stream = iota_stream(1003);
    TextSplits s = split_text(stream, 0.1, 0.05);
    CHECK(s.test.size() == 50);  // floor(1003 * 0.05)
    CHECK(s.valid.size() == 100); // floor(1003 * 0.1)
    CHECK(s.train.size() == 853);
    std::vector<int32_t> joined = s.train;
    joined.insert(joined.end(), s.valid.begin(), s.valid.end());
    joined.insert(joined.end(), s.test.begin(), s.test.end());
    CHECK(joined == stream); // in order: disjoint and nothing lost
    TextSplits again = split_text(stream, 0.1, 0.05);
    CHECK((again.train == s.train && again.valid == s.valid && again.test == s.test));

    TextSplits no_held_out = split_text(stream, 0, 0);
    CHECK(no_held_out.train == stream);
    CHECK((no_held_out.valid.empty() && no_held_out.test.empty()));
    REQUIRE_ERROR_WITH(split_text(stream, 0.6, 0.4), "split_text", "valid_fraction 0.6", "sum < 1");
    REQUIRE_ERROR_WITH(split_text(stream, -0.1, 0), "split_text", "valid_fraction -0.1");
}

TEST_CASE("text: a corpus file becomes BOS + bytes + EOS; unreadable or empty files are errors", "[text]") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / fmt::format("mg_test_text_{}", ::getpid());
    fs::create_directories(dir);
    const std::string path = (dir / "c.txt").string(), empty = (dir / "empty.txt").string();
    std::string text = "In the beginning\n\x01\xff";
    for (int i = 0; i < 50; ++i) text += fmt::format("line {}\n", i);
    std::ofstream(path, std::ios::binary) << text;
    std::ofstream(empty, std::ios::binary).flush();

    TextCorpus c = load_text_corpus(path, 0.2, 0.1);
    CHECK(c.bytes == int64_t(text.size()));
    CHECK(c.path == path);
    std::vector<int32_t> stream = c.splits.train;
    stream.insert(stream.end(), c.splits.valid.begin(), c.splits.valid.end());
    stream.insert(stream.end(), c.splits.test.begin(), c.splits.test.end());
    REQUIRE(stream.size() == text.size() + 2);
    CHECK(stream.front() == kTextBos);
    CHECK(stream.back() == kTextEos);
    CHECK(decode_bytes(stream) == text);
    CHECK(c.splits.test.size() == (text.size() + 2) / 10);

    REQUIRE_ERROR_WITH(load_text_corpus((dir / "missing.txt").string(), 0.1, 0), "cannot read", "missing.txt");
    REQUIRE_ERROR_WITH(load_text_corpus((dir / "kjv.txt").string(), 0.1, 0), "make corpus");
    REQUIRE_ERROR_WITH(load_text_corpus(empty, 0.1, 0), "empty.txt", "is empty");
    fs::remove_all(dir);
}

TEST_CASE("text: training batches are shifted windows, a pure function of (seed, step)", "[text]") {
    const int64_t n = 997, B = 5, L = 13;
    const std::vector<int32_t> tokens = iota_stream(n);
    const TextBatch a = sample_text_batch(tokens, B, L, /*seed=*/7, /*step=*/3);
    CHECK(a.inputs.shape() == Shape{B, L});
    CHECK(a.targets.shape() == Shape{B * L});
    CHECK(a.positions.shape() == Shape{B * L});
    const std::vector<int32_t> in = ints(a.inputs), tgt = ints(a.targets), pos = ints(a.positions);
    for (int64_t b = 0; b < B; ++b) {
        const int32_t start = in[size_t(b * L)];
        CHECK(start == sample_window_start(n, L, 7, 3, b, B));
        CHECK(start + L + 1 <= n); // the window w[0..L] lies inside the tokens
        for (int64_t t = 0; t < L; ++t) {
            const size_t i = size_t(b * L + t);
            CHECK(in[i] == start + t);
            CHECK(tgt[i] == start + t + 1); // the next token
            CHECK(pos[i] == int32_t(i));    // every position labelled
        }
    }
    // the same (seed, step) gives the same batch; other steps and seeds others
    CHECK(ints(sample_text_batch(tokens, B, L, 7, 3).inputs) == in);
    CHECK(ints(sample_text_batch(tokens, B, L, 7, 4).inputs) != in);
    CHECK(ints(sample_text_batch(tokens, B, L, 8, 3).inputs) != in);

    // starts cover the whole range 0 .. n-L-1 (and nothing outside) on a short text
    std::set<int64_t> starts;
    for (uint64_t step = 0; step < 200; ++step)
        for (int64_t b = 0; b < 4; ++b) starts.insert(sample_window_start(L + 4, L, 1, step, b, 4));
    CHECK(starts == std::set<int64_t>{0, 1, 2, 3});

    REQUIRE_ERROR_WITH(sample_text_batch(iota_stream(L + 1), B, L, 0, 0), "sample_text_batch", "14 tokens",
                       "seq_len + 1 = 14");
    REQUIRE_ERROR_WITH(sample_text_batch(tokens, 0, L, 0, 0), "sample_text_batch", "batch 0");
}

TEST_CASE("text: the evaluation tiling makes every token but the first a target exactly once", "[text]") {
    const int64_t n = 101, L = 7; // (101 - 1) / 7 = 14 windows; the last 2 tokens are left out
    const std::vector<int32_t> tokens = iota_stream(n);
    REQUIRE(num_text_windows(n, L) == 14);
    CHECK(num_text_windows(L + 1, L) == 1);
    CHECK(num_text_windows(L, L) == 0);
    CHECK(num_text_windows(0, L) == 0);
    std::vector<int32_t> all_targets;
    for (int64_t first = 0; first < 14; first += 4) { // batches of 4, the last one of 2
        const int64_t count = std::min<int64_t>(4, 14 - first);
        TextBatch b = text_windows(tokens, L, first, count);
        CHECK(b.inputs.shape() == Shape{count, L});
        const std::vector<int32_t> in = ints(b.inputs), tgt = ints(b.targets);
        for (int64_t i = 0; i < count * L; ++i) CHECK(tgt[size_t(i)] == in[size_t(i)] + 1);
        all_targets.insert(all_targets.end(), tgt.begin(), tgt.end());
    }
    std::vector<int32_t> expected(14 * L);
    for (size_t i = 0; i < expected.size(); ++i) expected[i] = int32_t(i + 1);
    CHECK(all_targets == expected);
    REQUIRE_ERROR_WITH(text_windows(tokens, L, 12, 3), "text_windows", "windows 12..14", "hold 14 windows");
}

TEST_CASE("text: bits per byte is nats / ln 2", "[text]") {
    CHECK(bits_per_byte(std::numbers::ln2) == 1.0);
    CHECK(std::abs(bits_per_byte(std::log(256.0)) - 8.0) < 1e-12); // uniform over bytes: 8 bits
    CHECK(bits_per_byte(0) == 0);
}
