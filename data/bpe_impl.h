// data/bpe_impl.h: the private parts of data/bpe.h's BpeTokenizer, shared by its two halves:
// data/bpe.cpp (encoding and decoding: steps 2-6 of bpe.h) and data/bpe_json.cpp (reading
// tokenizer.json into this Impl). Nothing outside those two files includes it.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/bpe.h"

namespace mg::data {

namespace bpe_detail {

// ---- the byte-to-unicode table (data/bpe.h, step 4) ------------------------------------------

struct ByteTable {
    std::array<char32_t, 256> to_cp{};
    std::array<std::string, 256> to_utf8; // each byte's character as UTF-8 (1 or 2 bytes)
    std::array<int16_t, 0x144> from_cp{}; // code point -> byte, or -1 (every mapped cp is < 0x144)
};

const ByteTable& byte_table();

// The bytes a token decodes to (ByteLevel decoder): its characters through the table when all of
// them are table characters, else its own UTF-8.
std::string token_to_bytes(const std::string& token);

// ---- added tokens (step 2) ---------------------------------------------------------------------

struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool special = false, normalized = true, lstrip = false, rstrip = false, single_word = false;
};

// A trie of one pass's added tokens: the longest one starting at a position.
class TokenTrie {
public:
    void add(std::string_view s, int32_t token) {
        int32_t node = 0;
        for (unsigned char c : s) {
            int32_t next = -1;
            for (const auto& [byte, child] : nodes_[size_t(node)].children)
                if (byte == c) next = child;
            if (next < 0) {
                next = int32_t(nodes_.size());
                nodes_[size_t(node)].children.emplace_back(c, next);
                nodes_.emplace_back();
            }
            node = next;
        }
        nodes_[size_t(node)].token = token;
        first_[static_cast<unsigned char>(s[0])] = true;
    }
    bool empty() const { return nodes_.size() == 1; }
    // (length, token) of the longest token that s[i..] begins with; token -1 when none does.
    std::pair<size_t, int32_t> longest_at(std::string_view s, size_t i) const {
        if (!first_[static_cast<unsigned char>(s[i])]) return {0, -1};
        std::pair<size_t, int32_t> best{0, -1};
        int32_t node = 0;
        for (size_t k = i; k < s.size(); ++k) {
            int32_t next = -1;
            for (const auto& [byte, child] : nodes_[size_t(node)].children)
                if (byte == static_cast<unsigned char>(s[k])) next = child;
            if (next < 0) break;
            node = next;
            if (nodes_[size_t(node)].token >= 0) best = {k + 1 - i, nodes_[size_t(node)].token};
        }
        return best;
    }

private:
    struct Node {
        std::vector<std::pair<unsigned char, int32_t>> children;
        int32_t token = -1;
    };
    std::vector<Node> nodes_{1};
    std::array<bool, 256> first_{};
};

// ---- the pre-tokenizer's steps (step 3) ----------------------------------------------------------

enum class PreStep { kPrefixSpace, kSplit };

// ---- BPE (step 5) ----------------------------------------------------------------------------

struct MergeRule {
    int32_t rank, new_id;
};

inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// The post-processor's `single` template: items that are either the sequence or fixed ids.
struct TemplateItem {
    bool sequence = false;
    std::vector<int32_t> ids;
};
using Template = std::vector<TemplateItem>;

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

} // namespace bpe_detail

struct BpeTokenizer::Impl {
    using AddedToken = bpe_detail::AddedToken;
    using MergeRule = bpe_detail::MergeRule;
    using PreStep = bpe_detail::PreStep;
    using StringHash = bpe_detail::StringHash;
    using StringMap = bpe_detail::StringMap;
    using Template = bpe_detail::Template;
    using TokenTrie = bpe_detail::TokenTrie;

    std::string where; // "tokenizer '<path>'" for errors

    // vocabulary: ids 0..N-1 of the model, then the added tokens not in it
    std::vector<std::string> token; // id -> vocab string or added content
    std::vector<std::string> bytes; // id -> what it decodes to
    std::vector<uint8_t> special; // id -> a special added token
    StringMap model_vocab; // model.vocab
    StringMap added_vocab; // added token content -> id
    int32_t model_size = 0;

    // model
    std::unordered_map<uint64_t, MergeRule> merges;
    std::array<int32_t, 256> byte_id{}; // the id of each byte's one-character token, or -1
    int32_t unk_id = -1;
    bool fuse_unk = false, ignore_merges = false;

    std::vector<AddedToken> added;
    TokenTrie plain_trie, normalized_trie; // added tokens with normalized false / true
    std::vector<PreStep> steps;
    std::vector<Template> post; // applied in order

    static constexpr size_t kCacheMaxWordBytes = 256, kCacheMaxEntries = 65536;
    mutable std::mutex cache_mutex;
    mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;

    void merge_word(std::string_view w, std::vector<int32_t>& out) const;
    void bpe_word(std::string_view w, std::vector<int32_t>& out) const;
    void pre_tokenize(std::string_view piece, size_t step, std::vector<int32_t>& out) const;
    void check_id(int32_t id, size_t index, const char* fn) const;
};

} // namespace mg::data
