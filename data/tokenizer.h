// data/tokenizer.h: the tokenizer a language model reads text through: bytes (data/text.h, the
// default) or a byte-level BPE read from a tokenizer.json (data/bpe.h). One interface for the
// corpus task, evaluation (bits per byte) and generation.
//
//                    bytes (path "")                 BPE (path of a tokenizer.json)
//   vocab_size       258                             the file's largest id + 1
//   encode(text)     the bytes, ids 0..255           tokenizers' Tokenizer.encode(text).ids
//   token_bytes(id)  the byte (BOS, EOS: nothing)    what the id decodes to (special tokens:
//                                                    their text, e.g. "<|endoftext|>")
//   begin            BOS (256): a corpus stream      <|endoftext|> when the file has it, else
//                    and a generation start with it  none: GPT-NeoX's models begin a document
//                                                    after it, and transformers' generate feeds
//                                                    it for an empty prompt
//   begin_always     true (every generation)         false (only for an empty prompt: a
//                                                    prompt is fed as the tokenizer encodes it,
//                                                    as transformers does)
//   end              EOS (257)                       <|endoftext|> (or none)
//   sampleable(id)   bytes and EOS                   every id < vocab_size
// A corpus stream is begin, encode(text), end (each when the tokenizer has it). Bits per byte
// counts the bytes each target stands for (target_bytes: token_bytes' length; a special token
// counts as one byte, as the byte tokenizer's EOS does), so byte and BPE models compare.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mg::data {

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    virtual std::string name() const = 0; // "bytes" or "bpe <path>"
    virtual int64_t vocab_size() const = 0;
    virtual std::vector<int32_t> encode(std::string_view text) const = 0;
    // The bytes `id` decodes to; an id outside [0, vocab_size) is an mg::Error naming it.
    virtual std::string token_bytes(int32_t id) const = 0;
    // Whether the id is a special token (BOS/EOS; a BPE file's special added tokens).
    virtual bool is_special(int32_t id) const = 0;
    std::optional<int32_t> begin, end;
    bool begin_always = false;

    // The concatenated token_bytes of ids (every id checked, naming its index when bad).
    std::string decode(std::span<const int32_t> ids) const;
    // The bytes a target stands for in bits per byte: token_bytes' length, 1 for a special token.
    int64_t target_bytes(int32_t id) const;
    bool sampleable(int32_t id) const;
    // The corpus stream of a text: begin, encode(text), end.
    std::vector<int32_t> stream(std::string_view text) const;
};

// "" -> the byte tokenizer; otherwise the BPE tokenizer of the tokenizer.json at `path`.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

} // namespace mg::data
