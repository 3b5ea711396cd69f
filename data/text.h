// data/text.h: byte-level language-model data (SPEC §4 "LM"): the tokenizer, a corpus with its
// train/valid/test split, and batches. Depends on tensor/ only.
//
// ---- Tokens ---------------------------------------------------------------------------------
//   ids 0..255   the bytes themselves (any byte: text need not be valid UTF-8 and still
//                round-trips exactly)
//   256  BOS     begins a text: the corpus stream starts with it, and generation feeds it first
//   257  EOS     ends a text: the corpus stream ends with it; generation stops when it is drawn
// kTextVocab = 258 (a model pads its embedding to a multiple of 8: 264 rows; the padding ids
// are never targets and generation never draws them, nor BOS).
//
// ---- Corpus and split -----------------------------------------------------------------------
// A corpus is one plain file read as bytes; its token stream is BOS, the bytes, EOS (n = bytes
// + 2 tokens). The split is contiguous and deterministic: the last floor(n test_fraction)
// tokens are the test split, the floor(n valid_fraction) tokens before them the valid split,
// everything before that the train split. (Contiguous, so no training window ever sees
// held-out text; the price is that the held-out text is the corpus's end: for the KJV, the last
// books of the New Testament.)
//
// ---- Windows and batches --------------------------------------------------------------------
// A window is seq_len + 1 consecutive tokens w[0..L]; inputs = w[0..L-1], targets = w[1..L]
// (the causal shift is done here: position t's target is the token after it). Every position
// is labelled, so positions = 0 .. B*L-1 (row-major), the form ops' cross_entropy_indexed takes.
//   training:   sample_text_batch: window b of step s starts at
//               rng::bits(seed, s*B + b, kTextLane) mod (n_train - L): a pure function of
//               (seed, step), so a resumed run draws exactly the batches it would have drawn.
//   evaluation: text_windows: the split tiled by windows with stride L (window k starts at k*L),
//               so each token but the first is a target exactly once; there are
//               num_text_windows(n, L) = (n - 1) / L of them (a short tail is left out).
// Bits per byte: every target is one byte (the single EOS target of a corpus counts as one), so
// a mean cross-entropy of l nats per target is l / ln 2 bits per byte; perplexity is exp(l).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"
#include "tensor/tensor.h"

namespace mg::data {

inline constexpr int32_t kTextBos = 256;
inline constexpr int32_t kTextEos = 257;
inline constexpr int32_t kTextVocab = 258;
inline constexpr uint64_t kTextLane = 0x7E47; // the sampler's RNG sub-stream

// Bytes -> ids 0..255 (no specials).
std::vector<int32_t> encode_bytes(std::string_view text);
// ids -> bytes; BOS and EOS produce nothing. An id outside [0, kTextVocab) is an mg::Error
// naming it and its index.
std::string decode_bytes(std::span<const int32_t> ids);

struct TextSplits {
    std::vector<int32_t> train, valid, test;
};
// The contiguous split above of an already-encoded stream. Fractions must be >= 0 with a sum
// < 1; errors name the argument.
TextSplits split_text(std::span<const int32_t> stream, double valid_fraction, double test_fraction);

struct TextCorpus {
    std::string path;
    int64_t bytes = 0; // the file's size
    TextSplits splits;
};
// Reads `path` (an mg::Error names the file when it cannot be read or is empty), builds the
// stream BOS + bytes + EOS (with a tokenizer: its stream(), data/tokenizer.h) and splits it. The path must name a regular file of at most
// kMaxCorpusBytes (a directory, a pipe or /dev/urandom is refused before anything is read).
inline constexpr uint64_t kMaxCorpusBytes = uint64_t(1) << 30; // 1 GiB of text: 4 GiB of tokens
TextCorpus load_text_corpus(const std::string& path, double valid_fraction, double test_fraction,
                            const Tokenizer* tokenizer = nullptr);

struct TextBatch {
    Tensor inputs;    // (B, L) i32
    Tensor targets;   // (B*L) i32: targets[b*L + t] = the token after inputs[b, t]
    Tensor positions; // (B*L) i32: 0 .. B*L-1, every position labelled
};
// B windows drawn for training step `step` (see above). tokens.size() must exceed seq_len + 1.
TextBatch sample_text_batch(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len, uint64_t seed,
                            uint64_t step, Device device = Device::cpu());
// The window start of sequence b at step `step`, as sample_text_batch draws it.
int64_t sample_window_start(int64_t num_tokens, int64_t seq_len, uint64_t seed, uint64_t step, int64_t b,
                            int64_t batch);

// Stride-L windows first .. first+count-1 of the tiling (see above).
int64_t num_text_windows(int64_t num_tokens, int64_t seq_len);
TextBatch text_windows(std::span<const int32_t> tokens, int64_t seq_len, int64_t first, int64_t count,
                       Device device = Device::cpu());

// l nats per byte -> bits per byte (l / ln 2).
double bits_per_byte(double nats_per_byte);

} // namespace mg::data
