// data/bpe.h: a byte-level BPE tokenizer read from a Hugging Face `tokenizer.json`, encoding and
// decoding as the `tokenizers` library does (Tokenizer.encode(text).ids, Tokenizer.decode) for the
// GPT-2 / GPT-NeoX family: the tokenizer of pretrained Mamba models (state-spaces/mamba-*-hf use
// EleutherAI/gpt-neox-20b's). Depends on tensor/ only; tests/test_bpe.cpp checks it against
// cases recorded with tokenizers (tools/make_tokenizer_fixture.py).
//
// ---- Encoding, step by step -------------------------------------------------------------------
//   1. normalize: nothing (the only normalizer accepted is null).
//   2. split on added tokens, in two passes as tokenizers does: first the added tokens with
//      normalized=false (the special ones, as a rule) over the whole text, then those with
//      normalized=true over each piece left between. A pass takes, scanning left to right, at the
//      leftmost position where any of its tokens occurs, the longest one (Aho-Corasick
//      "leftmost-longest"); then a match is dropped when its token is single_word and a \w
//      character touches it (the search goes on after it all the same); lstrip widens it left
//      over the whitespace before it (not into the previous match), rstrip right over the
//      whitespace after it. A matched added token is its id; the text between matches goes on
//      to step 3 (empty pieces vanish).
//   3. pre-tokenize each piece (ByteLevel): with add_prefix_space, a piece that does not begin
//      with ' ' gets one in front; then the GPT-2 pattern
//          's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      cuts it into pre-tokens (gpt2_split below: a hand-written scanner over code points, tried
//      alternative by alternative as the regex engine does: a contraction ('s, 't, ... case-
//      sensitive: 'S is not one); else an optional ' ' and a run of letters, of digits, or of
//      other characters; else a run of whitespace, less its last character when something other
//      than whitespace follows (so that the space goes to the next word: "a   b" is "a", "  ",
//      " b")). The classes come from data/unicode_tables.h (Unicode 16.0.0, the version of
//      the regex engine inside tokenizers 0.23.3; \s is White_Space).
//   4. bytes to unicode characters: each byte of a pre-token becomes one printable character
//      by the table below (' ' -> 'Ġ' U+0120, '\n' -> 'Ċ' U+010A, 'a' -> 'a').
//   5. BPE: the pre-token starts as one symbol per character (a character missing from the
//      vocabulary becomes unk_token, or is dropped when there is none, as tokenizers does); then,
//      while any adjacent pair of symbols is in the merges, the pair of lowest rank (its index in
//      `merges`) is merged, the leftmost first among equal ranks. A priority queue of candidate
//      pairs makes this O(n log n) in the pre-token's length. With ignore_merges, a pre-token that
//      is itself in the vocabulary is that one token, merges unused.
//   6. ids: the symbols' ids, pre-token after pre-token; the post-processor (ByteLevel: nothing;
//      TemplateProcessing: its `single` template, e.g. BOS + ids) finishes the sequence.
// Results of step 5 are cached per pre-token (pre-tokens under 256 bytes, at most 65,536 of
// them, shared by copies of the tokenizer and safe to use from several threads).
//
// ---- The byte-to-unicode table (GPT-2's bytes_to_unicode) -------------------------------------
// Byte b maps to the code point b itself when b is printable Latin-1 ('!'..'~' 0x21-0x7E,
// '¡'..'¬' 0xA1-0xAC, '®'..'ÿ' 0xAE-0xFF: 188 bytes), and otherwise (0x00-0x20, 0x7F-0xA0, 0xAD:
// 68 bytes) to U+0100 + n, where n counts those bytes in increasing order: 0x00 -> U+0100 'Ā',
// 0x20 ' ' -> U+0120 'Ġ', 0x7F -> U+0121, 0xA0 -> U+0142, 0xAD -> U+0143 'Ń'. So every byte is a
// distinct printable character and any byte string is a string of vocabulary characters.
//
// ---- Decoding -------------------------------------------------------------------------------
// Each id's token (an added token's content, or the model's vocabulary string) becomes bytes
// (token_bytes): its characters mapped back through the table when all of them are in it,
// otherwise the token's own UTF-8 (an added token such as "  " or "<|endoftext|>" stays as it
// is); decode concatenates them, leaving out special tokens when asked. tokenizers then turns the
// bytes into a str with String::from_utf8_lossy: each maximal ill-formed UTF-8 subpart becomes
// U+FFFD. decode() here returns the raw bytes instead (a generator streams token_bytes, and a byte
// split across tokens is not lost); utf8_lossy(decode(ids, skip)) is exactly tokenizers' string.
// Differences from tokenizers' decode, both deliberate: an id out of range is an error (tokenizers
// drops it silently), and skip_special_tokens defaults to false (Python's default is True).
//
// ---- What is supported (anything else in the file is an mg::Error naming the file, the JSON path
// ---- and what is supported; unknown keys too) ---------------------------------------------------
//   version "1.0" (or absent); truncation null; padding null; normalizer null;
//   pre_tokenizer: ByteLevel (add_prefix_space true/false, use_regex true/false, trim_offsets any)
//     or Sequence [Split(Regex = the GPT-2 pattern exactly, behavior Isolated, invert false) ...,
//     ByteLevel] (the Splits first, ByteLevel last, no nested Sequence; tokenizers then applies
//     add_prefix_space to every split piece, and so does this);
//   model: BPE with vocab (ids exactly 0..N-1, distinct) and merges (all "a b" strings, or all
//     [a, b] pairs; a, b and ab must be in the vocab; a pair listed twice takes its last rank, as
//     in tokenizers), dropout null or 0, unk_token null or a vocab token, fuse_unk, byte_fallback
//     false, continuing_subword_prefix and end_of_word_suffix null or "", ignore_merges true/false;
//   added_tokens: any content (non-empty, distinct), special, normalized (both passes of step 2;
//     without a normalizer they differ only in order), lstrip, rstrip, single_word; the id must be
//     the one tokenizers assigns: the vocab id when the content is in model.vocab, else the next
//     id after the vocabulary and the added tokens before it;
//   post_processor: null, ByteLevel, TemplateProcessing (its `single` template; `pair`, when
//     there, is checked but unused, as encode takes one sequence), or a Sequence of those;
//   decoder: ByteLevel.
// Input text that is not well-formed UTF-8 (tokenizers cannot be given it: it takes a str) is
// still encoded without loss: each byte of an ill-formed sequence counts as one character of the
// `other` class (not a letter, digit or space), so decode(encode(s)) == s for every byte string
// when all 256 byte characters are in the vocabulary.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mg::data {

class BpeTokenizer {
public:
    // Reads and checks a tokenizer.json (at most kMaxTokenizerBytes); errors name the file.
    static BpeTokenizer load(const std::string& path);
    // The same from text; `where` names it in errors (a path, or "test input").
    static BpeTokenizer parse(std::string_view json_text, const std::string& where);

    // == tokenizers' Tokenizer.encode(text).ids (add_special_tokens=True: with the post-processor).
    std::vector<int32_t> encode(std::string_view text) const;
    // == Tokenizer.decode(ids, skip_special_tokens=...) as raw bytes (see "Decoding"). An id out
    // of range is an mg::Error naming it and its index.
    std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
    // The bytes one id decodes to; concatenating token_bytes over ids gives decode(ids).
    std::string token_bytes(int32_t id) const;

    int64_t vocab_size() const; // largest id + 1, added tokens included
    std::optional<int32_t> token_to_id(std::string_view token) const; // added tokens first, then the vocab
    const std::string& id_to_token(int32_t id) const; // the vocab string ("Ġthe") or added content
    bool is_special(int32_t id) const;                // an added token with special=true

    struct Impl;

private:
    explicit BpeTokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<Impl> impl_; // immutable after parse, but for the thread-safe word cache
};

inline constexpr uint64_t kMaxTokenizerBytes = uint64_t(1) << 28; // 256 MiB (GPT-NeoX's file: 2 MB)

// The byte-to-unicode table above: byte b -> its code point; and back (-1: no byte maps there).
char32_t byte_to_unicode(uint8_t b);
int unicode_to_byte(char32_t cp);

// The GPT-2 pattern's pre-tokens of `text` (step 3, without the prefix space): consecutive,
// non-empty, covering the text. Ill-formed UTF-8 bytes count as `other` characters.
std::vector<std::string_view> gpt2_split(std::string_view text);

// `bytes` with each maximal ill-formed UTF-8 subpart replaced by U+FFFD (EF BF BD), as Rust's
// String::from_utf8_lossy does: the string tokenizers' decode returns for these bytes.
std::string utf8_lossy(std::string_view bytes);

} // namespace mg::data
