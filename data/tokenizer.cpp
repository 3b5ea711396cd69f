// data/tokenizer.cpp: see tokenizer.h.
#include "data/tokenizer.h"

#include "data/bpe.h"
#include "data/text.h"
#include "tensor/check.h"

namespace mg::data {

namespace {

class ByteTokenizer final : public Tokenizer {
public:
    ByteTokenizer() {
        begin = kTextBos;
        end = kTextEos;
        begin_always = true;
    }
    std::string name() const override { return "bytes"; }
    int64_t vocab_size() const override { return kTextVocab; }
    std::vector<int32_t> encode(std::string_view text) const override { return encode_bytes(text); }
    std::string token_bytes(int32_t id) const override {
        const int32_t one[1] = {id};
        return decode_bytes(one);
    }
    bool is_special(int32_t id) const override { return id == kTextBos || id == kTextEos; }
};

class BpeTokenizerAdapter final : public Tokenizer {
public:
    explicit BpeTokenizerAdapter(const std::string& path) : path_(path), bpe_(BpeTokenizer::load(path)) {
        if (auto eot = bpe_.token_to_id("<|endoftext|>")) begin = end = *eot;
    }
    std::string name() const override { return "bpe " + path_; }
    int64_t vocab_size() const override { return bpe_.vocab_size(); }
    std::vector<int32_t> encode(std::string_view text) const override { return bpe_.encode(text); }
    std::string token_bytes(int32_t id) const override { return bpe_.token_bytes(id); }
    bool is_special(int32_t id) const override { return bpe_.is_special(id); }

private:
    std::string path_;
    BpeTokenizer bpe_;
};

} // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
        MG_CHECK(ids[i] >= 0 && ids[i] < vocab_size(), "decode ({}): id {} at index {} is outside the vocabulary "
                 "[0, {})", name(), ids[i], i, vocab_size());
        out += token_bytes(ids[i]);
    }
    return out;
}

int64_t Tokenizer::target_bytes(int32_t id) const {
    if (is_special(id)) return 1;
    return std::max<int64_t>(1, int64_t(token_bytes(id).size()));
}

bool Tokenizer::sampleable(int32_t id) const {
    if (id < 0 || id >= vocab_size()) return false;
    return !(begin_always && begin && id == *begin && (!end || *end != id));
}

std::vector<int32_t> Tokenizer::stream(std::string_view text) const {
    std::vector<int32_t> out;
    if (begin) out.push_back(*begin);
    std::vector<int32_t> ids = encode(text);
    out.insert(out.end(), ids.begin(), ids.end());
    if (end) out.push_back(*end);
    return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
    if (path.empty()) return std::make_unique<ByteTokenizer>();
    return std::make_unique<BpeTokenizerAdapter>(path);
}

} // namespace mg::data
