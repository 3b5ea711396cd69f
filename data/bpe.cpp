// data/bpe.cpp: see data/bpe.h. In reading order: UTF-8 and the character classes, the byte
// table, the GPT-2 scanner, the added-token matcher, BPE merging, then reading tokenizer.json.
#include "data/bpe.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "data/read_file.h"
#include "data/unicode_tables.h"
#include "tensor/check.h"
#include "tensor/json.h"

namespace mg::data {

namespace {

using nlohmann::json;

// ---- UTF-8 and character classes -----------------------------------------------------------------

// One character of a byte string: a well-formed UTF-8 sequence (RFC 3629, as tensor/json.h's
// utf8_invalid_at), or else a single byte that counts as an ill-formed character.
struct Char {
    uint32_t cp; // the code point (an ill-formed byte: the byte's value)
    uint32_t len; // bytes, 1..4
    bool valid;
};

Char char_at(std::string_view s, size_t i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) return {c, 1, true};
    size_t n = 0;
    unsigned lo = 0x80, hi = 0xBF; // the allowed range of the second byte
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return {c, 1, false};
    if (i + n >= s.size()) return {c, 1, false};
    for (size_t k = 1; k <= n; ++k) {
        const unsigned char b = static_cast<unsigned char>(s[i + k]);
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return {c, 1, false};
        cp = (cp << 6) | (b & 0x3F);
    }
    return {cp, uint32_t(n + 1), true};
}

// The character that ends at s[end - 1] (end > 0): the well-formed sequence of 2..4 bytes ending
// there, else the single byte.
Char char_before(std::string_view s, size_t end) {
    for (size_t back = 2; back <= 4 && back <= end; ++back) {
        const unsigned char lead = static_cast<unsigned char>(s[end - back]);
        if ((lead & 0xC0) == 0x80) continue; // a continuation byte: look further back
        const Char c = char_at(s, end - back);
        if (c.valid && c.len == back) return c;
        break;
    }
    return char_at(s, end - 1);
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

// Class (unicode::L, N, S or O) | unicode::W of a code point, from data/unicode_tables.h.
uint8_t cp_flags(uint32_t cp) {
    using namespace unicode;
    static const std::array<uint8_t, 256> latin1 = [] { // the fast path: ASCII and Latin-1
        std::array<uint8_t, 256> t{};
        for (const Run& r : kUnicodeRuns)
            for (uint32_t c = r.lo; c <= r.hi && c < 256; ++c) t[c] = r.flags;
        return t;
    }();
    if (cp < 256) return latin1[cp];
    const Run* end = kUnicodeRuns + kUnicodeRunCount;
    const Run* it = std::upper_bound(kUnicodeRuns, end, cp, [](uint32_t v, const Run& r) { return v < r.lo; });
    if (it == kUnicodeRuns) return O;
    --it;
    return cp <= it->hi ? it->flags : uint8_t(O);
}

// An ill-formed byte is `other` and not a word character.
uint8_t char_class(const Char& c) { return c.valid ? (cp_flags(c.cp) & unicode::kClassMask) : unicode::O; }
bool is_space(const Char& c) { return char_class(c) == unicode::S; }
bool is_word(const Char& c) { return c.valid && (cp_flags(c.cp) & unicode::W) != 0; }

// ---- the byte-to-unicode table (data/bpe.h) ----------------------------------------------------

struct ByteTable {
    std::array<char32_t, 256> to_cp{};
    std::array<std::string, 256> to_utf8; // each byte's character as UTF-8 (1 or 2 bytes)
    std::array<int16_t, 0x144> from_cp{}; // code point -> byte, or -1 (every mapped cp is < 0x144)
};

const ByteTable& byte_table() {
    static const ByteTable t = [] {
        ByteTable b;
        b.from_cp.fill(-1);
        int n = 0;
        for (int c = 0; c < 256; ++c) {
            const bool printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
            b.to_cp[size_t(c)] = printable ? char32_t(c) : char32_t(0x100 + n++);
            append_utf8(b.to_utf8[size_t(c)], uint32_t(b.to_cp[size_t(c)]));
            b.from_cp[b.to_cp[size_t(c)]] = int16_t(c);
        }
        return b;
    }();
    return t;
}

// Step 4: bytes -> the string of their table characters (the form vocab and merges are written in).
std::string to_byte_level(std::string_view bytes) {
    const ByteTable& t = byte_table();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) out += t.to_utf8[b];
    return out;
}

// The bytes a token decodes to (ByteLevel decoder): its characters through the table when all of
// them are table characters, else its own UTF-8.
std::string token_to_bytes(const std::string& token) {
    std::string out;
    for (size_t i = 0; i < token.size();) {
        const Char c = char_at(token, i);
        const int b = c.valid ? unicode_to_byte(char32_t(c.cp)) : -1;
        if (b < 0) return token;
        out += char(b);
        i += c.len;
    }
    return out;
}

// ---- the GPT-2 pattern (step 3) ----------------------------------------------------------------

// The end of the pattern's match that starts at s[i] (every position starts one: each character
// is a letter, a digit, whitespace or other). The alternatives in the pattern's order:
//   's 't 're 've 'm 'll 'd | ' '? letters | ' '? digits | ' '? others | \s+(?!\S) | \s+
size_t gpt2_match_end(std::string_view s, size_t i) {
    const size_t n = s.size();
    if (s[i] == '\'' && i + 1 < n) {
        const char a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            const char b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    // ' '? then a run of one class (letters, digits or others): the space joins the run after it
    size_t run = i;
    if (s[i] == ' ' && i + 1 < n && char_class(char_at(s, i + 1)) != unicode::S) run = i + 1;
    const Char first = char_at(s, run);
    const uint8_t cls = char_class(first);
    if (cls != unicode::S) {
        size_t j = run + first.len;
        while (j < n) {
            const Char c = char_at(s, j);
            if (char_class(c) != cls) break;
            j += c.len;
        }
        return j;
    }
    // whitespace: the whole run when it ends the text; else the run less its last character (the
    // lookahead (?!\S) fails after the last one), or, for a single character, \s+ takes it
    size_t j = i, last = i;
    while (j < n) {
        const Char c = char_at(s, j);
        if (!is_space(c)) break;
        last = j;
        j += c.len;
    }
    if (j == n || last == i) return j;
    return last;
}

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

// A piece of the text after step 2: bytes [begin, end) and the added token's id, or -1 for text.
struct Piece {
    size_t begin, end;
    int32_t id;
};

// One pass of step 2 over `s` (tokenizers' AddedVocabulary::find_matches): matches are found
// left to right on the text as it is, each search resuming after the previous match as found
// (before lstrip/rstrip widen it, and also after a single_word match that was dropped).
std::vector<Piece> split_on_added(std::string_view s, const TokenTrie& trie, const std::vector<AddedToken>& added) {
    std::vector<Piece> out;
    if (trie.empty()) {
        if (!s.empty()) out.push_back({0, s.size(), -1});
        return out;
    }
    size_t start_offset = 0, pos = 0;
    while (pos < s.size()) {
        const auto [len, token] = trie.longest_at(s, pos);
        if (token < 0) {
            ++pos;
            continue;
        }
        size_t start = pos, stop = pos + len;
        pos = stop;
        const AddedToken& a = added[size_t(token)];
        if (a.single_word) {
            const bool word_before = start > 0 && is_word(char_before(s, start));
            const bool word_after = stop < s.size() && is_word(char_at(s, stop));
            if (word_before || word_after) continue;
        }
        if (a.lstrip) {
            size_t b = start;
            while (b > 0) {
                const Char c = char_before(s, b);
                if (!is_space(c)) break;
                b -= c.len;
            }
            start = std::max(b, start_offset);
        }
        if (a.rstrip) {
            while (stop < s.size()) {
                const Char c = char_at(s, stop);
                if (!is_space(c)) break;
                stop += c.len;
            }
        }
        if (start_offset < start) out.push_back({start_offset, start, -1});
        out.push_back({start, stop, a.id});
        start_offset = stop;
    }
    if (start_offset < s.size()) out.push_back({start_offset, s.size(), -1});
    return out;
}

// ---- the pre-tokenizer's steps (step 3) ----------------------------------------------------------

enum class PreStep { kPrefixSpace, kSplit };

// ---- BPE (step 5) ----------------------------------------------------------------------------

struct MergeRule {
    int32_t rank, new_id;
};

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

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

} // namespace

struct BpeTokenizer::Impl {
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

// Step 5 for one pre-token (bytes), without the cache: the queue holds candidate merges
// (rank, position of the left symbol, resulting id), lowest rank first and leftmost among equal
// ranks; an entry is stale when its left symbol was merged away, or when the pair now at its
// position no longer makes the same id.
void BpeTokenizer::Impl::merge_word(std::string_view w, std::vector<int32_t>& out) const {
    struct Symbol {
        int32_t id, prev, next;
        bool alive;
    };
    std::vector<Symbol> sym;
    sym.reserve(w.size());
    bool last_unk = false;
    for (unsigned char b : w) {
        int32_t id = byte_id[b];
        if (id < 0) { // not in the vocabulary: unk_token (consecutive ones fused with fuse_unk), or dropped
            if (unk_id < 0 || (fuse_unk && last_unk)) continue;
            id = unk_id;
            last_unk = true;
        } else {
            last_unk = false;
        }
        const int32_t k = int32_t(sym.size());
        sym.push_back({id, k - 1, k + 1, true});
    }
    if (sym.empty()) return;
    sym.back().next = -1;

    struct Candidate {
        int32_t rank, pos, new_id;
    };
    const auto later = [](const Candidate& a, const Candidate& b) {
        return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
    const auto rule = [&](int32_t left, int32_t right) -> const MergeRule* {
        const auto it = merges.find(pair_key(sym[size_t(left)].id, sym[size_t(right)].id));
        return it == merges.end() ? nullptr : &it->second;
    };
    for (int32_t k = 0; k + 1 < int32_t(sym.size()); ++k)
        if (const MergeRule* r = rule(k, k + 1)) queue.push({r->rank, k, r->new_id});

    while (!queue.empty()) {
        const Candidate top = queue.top();
        queue.pop();
        Symbol& left = sym[size_t(top.pos)];
        if (!left.alive || left.next < 0) continue;
        const MergeRule* now = rule(top.pos, left.next);
        if (!now || now->new_id != top.new_id) continue; // stale
        Symbol& right = sym[size_t(left.next)];
        left.id = top.new_id;
        right.alive = false;
        left.next = right.next;
        if (right.next >= 0) sym[size_t(right.next)].prev = top.pos;
        if (left.prev >= 0)
            if (const MergeRule* r = rule(left.prev, top.pos)) queue.push({r->rank, left.prev, r->new_id});
        if (left.next >= 0)
            if (const MergeRule* r = rule(top.pos, left.next)) queue.push({r->rank, top.pos, r->new_id});
    }
    for (int32_t k = 0; k >= 0; k = sym[size_t(k)].next) out.push_back(sym[size_t(k)].id);
}

// Step 5 with ignore_merges and the cache.
void BpeTokenizer::Impl::bpe_word(std::string_view w, std::vector<int32_t>& out) const {
    if (w.empty()) return;
    if (ignore_merges) {
        const auto it = model_vocab.find(to_byte_level(w));
        if (it != model_vocab.end()) {
            out.push_back(it->second);
            return;
        }
    }
    const bool cacheable = w.size() < kCacheMaxWordBytes;
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mutex);
        const auto it = cache.find(w);
        if (it != cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    const size_t first = out.size();
    merge_word(w, out);
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mutex);
        if (cache.size() < kCacheMaxEntries)
            cache.emplace(std::string(w), std::vector<int32_t>(out.begin() + long(first), out.end()));
    }
}

// Steps 3-5 for one piece of text between added tokens: the pre-tokenizer's steps from `step` on.
void BpeTokenizer::Impl::pre_tokenize(std::string_view piece, size_t step, std::vector<int32_t>& out) const {
    if (step == steps.size()) {
        bpe_word(piece, out);
        return;
    }
    if (steps[step] == PreStep::kPrefixSpace) {
        if (piece.starts_with(' ')) {
            pre_tokenize(piece, step + 1, out);
        } else {
            std::string spaced = " ";
            spaced += piece;
            pre_tokenize(spaced, step + 1, out);
        }
        return;
    }
    for (size_t i = 0; i < piece.size();) {
        const size_t j = gpt2_match_end(piece, i);
        pre_tokenize(piece.substr(i, j - i), step + 1, out);
        i = j;
    }
}

void BpeTokenizer::Impl::check_id(int32_t id, size_t index, const char* fn) const {
    if (id >= 0 && id < int32_t(token.size())) return;
    if (index == size_t(-1))
        throw Error(fmt::format("BpeTokenizer::{}: id {} is not a token of {} (ids are 0..{})", fn, id, where,
                                token.size() - 1));
    throw Error(fmt::format("BpeTokenizer::{}: id {} at index {} is not a token of {} (ids are 0..{})", fn, id, index,
                            where, token.size() - 1));
}

// ---- public functions --------------------------------------------------------------------------

char32_t byte_to_unicode(uint8_t b) { return byte_table().to_cp[b]; }

int unicode_to_byte(char32_t cp) { return cp < 0x144 ? byte_table().from_cp[cp] : -1; }

std::vector<std::string_view> gpt2_split(std::string_view text) {
    std::vector<std::string_view> out;
    for (size_t i = 0; i < text.size();) {
        const size_t j = gpt2_match_end(text, i);
        out.push_back(text.substr(i, j - i));
        i = j;
    }
    return out;
}

std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const Char c = char_at(s, i);
        if (c.valid) {
            out.append(s.substr(i, c.len));
            i += c.len;
            continue;
        }
        // the maximal subpart: a lead byte and the continuation bytes that could still follow it
        const unsigned char lead = static_cast<unsigned char>(s[i]);
        size_t n = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (lead >= 0xC2 && lead <= 0xDF) n = 1;
        else if (lead >= 0xE0 && lead <= 0xEF) n = 2, lo = lead == 0xE0 ? 0xA0 : 0x80, hi = lead == 0xED ? 0x9F : 0xBF;
        else if (lead >= 0xF0 && lead <= 0xF4) n = 3, lo = lead == 0xF0 ? 0x90 : 0x80, hi = lead == 0xF4 ? 0x8F : 0xBF;
        size_t k = 1;
        while (k <= n && i + k < s.size()) {
            const unsigned char b = static_cast<unsigned char>(s[i + k]);
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
            ++k;
        }
        out += "\xEF\xBF\xBD";
        i += k;
    }
    return out;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
    const Impl& m = *impl_;
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 1);
    for (const Piece& p : split_on_added(text, m.plain_trie, m.added)) {
        if (p.id >= 0) {
            ids.push_back(p.id);
            continue;
        }
        const std::string_view gap = text.substr(p.begin, p.end - p.begin);
        for (const Piece& q : split_on_added(gap, m.normalized_trie, m.added)) {
            if (q.id >= 0) ids.push_back(q.id);
            else m.pre_tokenize(gap.substr(q.begin, q.end - q.begin), 0, ids);
        }
    }
    for (const Template& t : m.post) {
        std::vector<int32_t> done;
        done.reserve(ids.size() + t.size());
        for (const TemplateItem& item : t) {
            if (item.sequence) done.insert(done.end(), ids.begin(), ids.end());
            else done.insert(done.end(), item.ids.begin(), item.ids.end());
        }
        ids = std::move(done);
    }
    return ids;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
    const Impl& m = *impl_;
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
        m.check_id(ids[i], i, "decode");
        if (skip_special_tokens && m.special[size_t(ids[i])]) continue;
        out += m.bytes[size_t(ids[i])];
    }
    return out;
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
    impl_->check_id(id, size_t(-1), "token_bytes");
    return impl_->bytes[size_t(id)];
}

int64_t BpeTokenizer::vocab_size() const { return int64_t(impl_->token.size()); }

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view t) const {
    if (const auto it = impl_->added_vocab.find(t); it != impl_->added_vocab.end()) return it->second;
    if (const auto it = impl_->model_vocab.find(t); it != impl_->model_vocab.end()) return it->second;
    return std::nullopt;
}

const std::string& BpeTokenizer::id_to_token(int32_t id) const {
    impl_->check_id(id, size_t(-1), "id_to_token");
    return impl_->token[size_t(id)];
}

bool BpeTokenizer::is_special(int32_t id) const {
    impl_->check_id(id, size_t(-1), "is_special");
    return impl_->special[size_t(id)] != 0;
}

// ---- reading tokenizer.json --------------------------------------------------------------------

namespace {

// A token or name for a message: as a JSON string (quoted, escaped), cut when long.
std::string as_json_string(const std::string& s) { return json_excerpt(json(s), 60); }

constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The reader of one tokenizer.json: `where` prefixes every message.
class Reader {
public:
    explicit Reader(std::string where) : where_(std::move(where)) {}
    const std::string& where() const { return where_; }

    [[noreturn]] void fail(const std::string& path, const std::string& what) const {
        throw Error(fmt::format("{}: {} {}", where_, path, what));
    }
    // j's "type" when it is an object whose type is one of `supported`; else an error that names
    // the type found.
    std::string type(const json& j, const std::string& path, const std::vector<std::string>& supported,
                     const std::string& why) const {
        if (!j.is_object()) fail(path, fmt::format("is {}, expected a JSON object", json_excerpt(j)));
        const auto it = j.find("type");
        if (it == j.end()) fail(path, fmt::format("has no \"type\"; supported: {}{}", fmt::join(supported, ", "), why));
        if (!it->is_string() ||
            std::find(supported.begin(), supported.end(), it->get<std::string>()) == supported.end())
            fail(path + ".type", fmt::format("is {}, which is not supported; supported: {}{}", json_excerpt(*it),
                                             fmt::join(supported, ", "), why));
        return it->get<std::string>();
    }
    // A field that must be absent or null.
    void null_only(const JsonSection& s, const std::string& key, const std::string& why) const {
        const json* v = s.find(key);
        if (v && !v->is_null()) fail(s.name(key), fmt::format("is {}, expected null ({})", json_excerpt(*v), why));
    }
    bool boolean(const JsonSection& s, const std::string& key, bool fallback) const {
        bool b = fallback;
        s.boolean(key, b);
        return b;
    }

private:
    std::string where_;
};

// model (BPE): the vocabulary, merges and options.
void read_model(const Reader& r, const json& j, BpeTokenizer::Impl& m) {
    r.type(j, "model", {"BPE"}, " (a byte-level BPE model)");
    const JsonSection s(j, r.where(), "model.",
                        {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                         "byte_fallback", "ignore_merges", "vocab", "merges"});
    if (const json* d = s.find("dropout"); d && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0))
        s.fail("dropout", *d, "null or 0 (BPE dropout, random merges, is not supported)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (const json* v = s.find(key);
            v && !v->is_null() && !(v->is_string() && v->get_ref<const std::string&>().empty()))
            s.fail(key, *v, "null or \"\" (a byte-level BPE has no subword prefix or suffix)");
    if (r.boolean(s, "byte_fallback", false))
        s.fail("byte_fallback", *s.find("byte_fallback"), "false (byte fallback, <0xNN> tokens, is not supported)");
    m.fuse_unk = r.boolean(s, "fuse_unk", false);
    m.ignore_merges = r.boolean(s, "ignore_merges", false);

    const json* vocab = s.find("vocab");
    if (!vocab) r.fail("model", "has no \"vocab\"");
    if (!vocab->is_object()) s.fail("vocab", *vocab, "an object {token: id}");
    const size_t n = vocab->size();
    MG_CHECK(n < size_t(INT32_MAX), "{}: model.vocab has {} tokens, more than int32 ids can number", r.where(), n);
    m.token.assign(n, std::string());
    std::vector<uint8_t> seen(n, 0);
    for (const auto& [tok, idv] : vocab->items()) {
        const std::string path = fmt::format("model.vocab[{}]", as_json_string(tok));
        if (!idv.is_number_integer()) r.fail(path, fmt::format("is {}, expected an integer id", json_excerpt(idv)));
        const int64_t id = idv.get<int64_t>();
        if (id < 0 || id >= int64_t(n))
            r.fail(path, fmt::format("is {}: an id out of range, expected 0..{} (the {} tokens' ids must be 0..N-1)",
                                     id, n - 1, n));
        if (seen[size_t(id)])
            r.fail(path, fmt::format("is {}, which model.vocab[{}] has too (duplicate ids)", id,
                                     as_json_string(m.token[size_t(id)])));
        seen[size_t(id)] = 1;
        m.token[size_t(id)] = tok;
        m.model_vocab.emplace(tok, int32_t(id));
    }
    m.model_size = int32_t(n);

    const ByteTable& t = byte_table();
    for (int b = 0; b < 256; ++b) {
        const auto it = m.model_vocab.find(t.to_utf8[size_t(b)]);
        m.byte_id[size_t(b)] = it == m.model_vocab.end() ? -1 : it->second;
    }
    if (const json* unk = s.find("unk_token"); unk && !unk->is_null()) {
        if (!unk->is_string()) s.fail("unk_token", *unk, "null or a token of model.vocab");
        const auto it = m.model_vocab.find(unk->get<std::string>());
        if (it == m.model_vocab.end()) s.fail("unk_token", *unk, "null or a token of model.vocab (it is not in it)");
        m.unk_id = it->second;
    }

    const json* merges = s.find("merges");
    if (!merges) return;
    const char* form = "an array of merges, all \"a b\" strings or all [\"a\", \"b\"] pairs";
    if (!merges->is_array()) s.fail("merges", *merges, form);
    const bool strings = !merges->empty() && (*merges)[0].is_string();
    for (size_t i = 0; i < merges->size(); ++i) {
        const json& e = (*merges)[i];
        const std::string path = fmt::format("model.merges[{}]", i);
        std::string a, b;
        if (strings && e.is_string()) {
            const std::string& line = e.get_ref<const std::string&>();
            const size_t sp = line.find(' ');
            if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
                r.fail(path, fmt::format("is {}, expected two tokens separated by one space", json_excerpt(e)));
            a = line.substr(0, sp);
            b = line.substr(sp + 1);
        } else if (!strings && e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
            a = e[0].get<std::string>();
            b = e[1].get<std::string>();
        } else {
            r.fail(path, fmt::format("is {}, expected {} (merges[0] is {})", json_excerpt(e),
                                     strings ? "a string \"a b\"" : "a pair [\"a\", \"b\"]",
                                     strings ? "a string" : "a pair"));
        }
        const auto ia = m.model_vocab.find(a), ib = m.model_vocab.find(b), iab = m.model_vocab.find(a + b);
        for (const auto& [it, what] : {std::pair{ia, &a}, std::pair{ib, &b}})
            if (it == m.model_vocab.end())
                r.fail(path, fmt::format("names {}, which is not in model.vocab", as_json_string(*what)));
        if (iab == m.model_vocab.end())
            r.fail(path, fmt::format("makes {}, which is not in model.vocab", as_json_string(a + b)));
        m.merges[pair_key(ia->second, ib->second)] = {int32_t(i), iab->second}; // a repeated pair: the last rank
    }
}

// added_tokens: checked and given the ids tokenizers gives them.
void read_added_tokens(const Reader& r, const json* j, BpeTokenizer::Impl& m) {
    if (!j || j->is_null()) return;
    if (!j->is_array()) r.fail("added_tokens", fmt::format("is {}, expected an array", json_excerpt(*j)));
    int32_t next_id = m.model_size;
    for (size_t i = 0; i < j->size(); ++i) {
        const std::string prefix = fmt::format("added_tokens[{}].", i);
        const JsonSection s((*j)[i], r.where(), prefix,
                            {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"});
        AddedToken a;
        int64_t id = -1;
        if (!s.find("id")) r.fail(prefix + "id", "is missing");
        s.integer("id", id, 0);
        const json* content = s.find("content");
        if (!content) r.fail(prefix + "content", "is missing");
        if (!content->is_string() || content->get_ref<const std::string&>().empty())
            s.fail("content", *content, "a non-empty string");
        a.content = content->get<std::string>();
        a.special = r.boolean(s, "special", false);
        a.normalized = r.boolean(s, "normalized", !a.special);
        a.lstrip = r.boolean(s, "lstrip", false);
        a.rstrip = r.boolean(s, "rstrip", false);
        a.single_word = r.boolean(s, "single_word", false);
        if (const auto it = m.added_vocab.find(a.content); it != m.added_vocab.end())
            r.fail(prefix + "content", fmt::format("{} is also the content of the added token with id {}",
                                                   as_json_string(a.content), it->second));
        // tokenizers' id: the vocab's when the content is in it, else the next one
        const auto in_vocab = m.model_vocab.find(a.content);
        const int32_t expected = in_vocab != m.model_vocab.end() ? in_vocab->second : next_id;
        if (id != expected)
            s.fail("id", *s.find("id"),
                   fmt::format("{} (tokenizers gives {} id {}: {})", expected, as_json_string(a.content), expected,
                               in_vocab != m.model_vocab.end()
                                   ? "its id in model.vocab"
                                   : "the next id after model.vocab and the added tokens before it"));
        a.id = expected;
        if (expected == next_id) ++next_id;
        m.added_vocab.emplace(a.content, a.id);
        m.added.push_back(std::move(a));
    }
}

// The GPT-2 Split of a pre_tokenizer Sequence.
void read_split(const Reader& r, const json& j, const std::string& path) {
    const JsonSection s(j, r.where(), path + ".", {"type", "pattern", "behavior", "invert"});
    const json* p = s.find("pattern");
    const std::string only =
        fmt::format("{{\"Regex\": \"{}\"}} (the GPT-2 pattern; no other is implemented)", kGpt2Pattern);
    if (!p || !p->is_object() || p->size() != 1 || !p->contains("Regex") || !(*p)["Regex"].is_string() ||
        (*p)["Regex"].get<std::string>() != kGpt2Pattern)
        r.fail(path + ".pattern", fmt::format("is {}, expected {}", p ? json_excerpt(*p, 200) : "missing", only));
    const json* b = s.find("behavior");
    if (!b || *b != "Isolated")
        r.fail(path + ".behavior", fmt::format("is {}, expected \"Isolated\"", b ? json_excerpt(*b) : "missing"));
    if (r.boolean(s, "invert", false)) s.fail("invert", *s.find("invert"), "false");
}

// ByteLevel as a pre-tokenizer, post-processor or decoder: its keys, each a boolean.
JsonSection byte_level_section(const Reader& r, const json& j, const std::string& path) {
    JsonSection s(j, r.where(), path + ".", {"type", "add_prefix_space", "trim_offsets", "use_regex"});
    bool unused = false;
    for (const char* key : {"add_prefix_space", "trim_offsets", "use_regex"}) s.boolean(key, unused);
    return s;
}

void read_pre_tokenizer(const Reader& r, const json* j, BpeTokenizer::Impl& m) {
    const std::string why =
        " (byte-level BPE: ByteLevel, or a Sequence of Splits with the GPT-2 pattern then ByteLevel)";
    if (!j || j->is_null())
        r.fail("pre_tokenizer", "is null, expected ByteLevel or a Sequence of Splits with the GPT-2 pattern then "
                                "ByteLevel (without ByteLevel the text is never mapped to byte characters)");
    const std::string type = r.type(*j, "pre_tokenizer", {"ByteLevel", "Sequence"}, why);
    const auto byte_level = [&](const json& b, const std::string& path) {
        const JsonSection s = byte_level_section(r, b, path);
        if (r.boolean(s, "add_prefix_space", true)) m.steps.push_back(PreStep::kPrefixSpace);
        if (r.boolean(s, "use_regex", true)) m.steps.push_back(PreStep::kSplit);
    };
    if (type == "ByteLevel") {
        byte_level(*j, "pre_tokenizer");
        return;
    }
    const JsonSection s(*j, r.where(), "pre_tokenizer.", {"type", "pretokenizers"});
    const json* list = s.find("pretokenizers");
    if (!list || !list->is_array() || list->empty())
        r.fail("pre_tokenizer.pretokenizers",
               fmt::format("is {}, expected a non-empty array", list ? json_excerpt(*list) : "missing"));
    for (size_t i = 0; i < list->size(); ++i) {
        const std::string path = fmt::format("pre_tokenizer.pretokenizers[{}]", i);
        const bool last = i + 1 == list->size();
        const std::string t = r.type((*list)[i], path, {last ? "ByteLevel" : "Split"},
                                     last ? " (the last one must be the ByteLevel that maps bytes to characters)"
                                          : " (Splits with the GPT-2 pattern first, ByteLevel last)");
        if (last) byte_level((*list)[i], path);
        else {
            read_split(r, (*list)[i], path);
            m.steps.push_back(PreStep::kSplit);
        }
    }
}

// TemplateProcessing: the `single` template; `pair` is checked the same way.
Template read_template(const Reader& r, const json& j, const std::string& path, int64_t vocab_size) {
    const JsonSection s(j, r.where(), path + ".", {"type", "single", "pair", "special_tokens"});
    std::unordered_map<std::string, std::vector<int32_t>> specials;
    const json* st = s.find("special_tokens");
    if (st && !st->is_null()) {
        if (!st->is_object()) s.fail("special_tokens", *st, "an object {name: {id, ids, tokens}}");
        for (const auto& [name, v] : st->items()) {
            const std::string p = fmt::format("{}.special_tokens[{}].", path, as_json_string(name));
            const JsonSection e(v, r.where(), p, {"id", "ids", "tokens"});
            const json* ids = e.find("ids");
            if (!ids || !ids->is_array()) r.fail(p + "ids", "is missing or not an array of ids");
            std::vector<int32_t>& out = specials[name];
            for (const json& id : *ids) {
                if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size)
                    r.fail(p + "ids", fmt::format("holds {}, expected ids 0..{}", json_excerpt(id), vocab_size - 1));
                out.push_back(int32_t(id.get<int64_t>()));
            }
            const json* toks = e.find("tokens");
            if (toks && (!toks->is_array() || toks->size() != ids->size()))
                r.fail(p + "tokens",
                       fmt::format("is {}, expected {} token strings, one per id", json_excerpt(*toks), ids->size()));
        }
    }
    Template single;
    for (const char* which : {"single", "pair"}) {
        const json* items = s.find(which);
        const std::string p = path + "." + which;
        if (!items && std::string(which) == "pair") continue; // optional: encode never pairs
        if (!items || !items->is_array())
            r.fail(p,
                   fmt::format("is {}, expected an array of template items", items ? json_excerpt(*items) : "missing"));
        for (size_t i = 0; i < items->size(); ++i) {
            const json& item = (*items)[i];
            const std::string ip = fmt::format("{}[{}]", p, i);
            if (!item.is_object() || item.size() != 1 || !(item.contains("SpecialToken") || item.contains("Sequence")))
                r.fail(ip, fmt::format("is {}, expected {{\"SpecialToken\": {{...}}}} or {{\"Sequence\": {{...}}}}",
                                       json_excerpt(item)));
            const bool sequence = item.contains("Sequence");
            const std::string key = sequence ? "Sequence" : "SpecialToken";
            const JsonSection e(item[key], r.where(), ip + "." + key + ".", {"id", "type_id"});
            std::string id;
            e.string("id", id);
            int64_t type_id = 0;
            e.integer("type_id", type_id, 0);
            TemplateItem t;
            t.sequence = sequence;
            if (sequence) {
                const bool ok = std::string(which) == "single" ? id == "A" : (id == "A" || id == "B");
                if (!ok)
                    r.fail(ip + ".Sequence.id",
                           fmt::format("is {}, expected {}", as_json_string(id),
                                       std::string(which) == "single" ? "\"A\"" : "\"A\" or \"B\""));
            } else {
                const auto it = specials.find(id);
                if (it == specials.end())
                    r.fail(ip + ".SpecialToken.id",
                           fmt::format("is {}, which is not in {}.special_tokens", as_json_string(id), path));
                t.ids = it->second;
            }
            if (std::string(which) == "single") single.push_back(std::move(t));
        }
    }
    return single;
}

void read_post_processor(const Reader& r, const json* j, BpeTokenizer::Impl& m) {
    if (!j || j->is_null()) return;
    const std::string why = " (a processor that adds other tokens, such as RobertaProcessing, is not implemented)";
    const auto one = [&](const json& p, const std::string& path) {
        const std::string type = r.type(p, path, {"ByteLevel", "TemplateProcessing"}, why);
        if (type == "ByteLevel") byte_level_section(r, p, path); // offsets only: the ids are unchanged
        else m.post.push_back(read_template(r, p, path, int64_t(m.token.size())));
    };
    const std::string type = r.type(*j, "post_processor", {"ByteLevel", "TemplateProcessing", "Sequence"}, why);
    if (type != "Sequence") {
        one(*j, "post_processor");
        return;
    }
    const JsonSection s(*j, r.where(), "post_processor.", {"type", "processors"});
    const json* list = s.find("processors");
    if (!list || !list->is_array()) r.fail("post_processor.processors", "is missing or not an array");
    for (size_t i = 0; i < list->size(); ++i) one((*list)[i], fmt::format("post_processor.processors[{}]", i));
}

} // namespace

BpeTokenizer BpeTokenizer::load(const std::string& path) {
    const std::string text = read_regular_file(path, "tokenizer", kMaxTokenizerBytes);
    return parse(text, path);
}

BpeTokenizer BpeTokenizer::parse(std::string_view json_text, const std::string& where) {
    auto m = std::make_shared<Impl>();
    m->where = fmt::format("tokenizer '{}'", where);
    const Reader r(m->where);
    const json j = parse_json(json_text, m->where);
    MG_CHECK(j.is_object(), "{}: is {}, expected a JSON object (a tokenizer.json)", m->where, json_excerpt(j));
    const JsonSection top(j, m->where, "",
                          {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "model",
                           "post_processor", "decoder"});
    if (const json* v = top.find("version"); v && *v != "1.0") top.fail("version", *v, "\"1.0\"");
    r.null_only(top, "truncation", "encode returns every id; truncation is not implemented");
    r.null_only(top, "padding", "encode returns the ids without padding; padding is not implemented");
    if (const json* n = top.find("normalizer"); n && !n->is_null()) {
        const std::string type = n->is_object() && n->contains("type") ? json_excerpt((*n)["type"]) : json_excerpt(*n);
        r.fail(
            "normalizer",
            fmt::format("is {}, expected null (normalizers are not implemented; GPT-2 and GPT-NeoX have none)", type));
    }
    const json* model = top.find("model");
    if (!model) r.fail("model", "is missing");
    read_model(r, *model, *m);
    read_added_tokens(r, top.find("added_tokens"), *m);
    read_pre_tokenizer(r, top.find("pre_tokenizer"), *m);

    // the id tables, added tokens after the model's
    m->token.resize(m->token.size() + std::count_if(m->added.begin(), m->added.end(),
                                                    [&](const AddedToken& a) { return a.id >= m->model_size; }));
    m->special.assign(m->token.size(), 0);
    for (const AddedToken& a : m->added) {
        m->token[size_t(a.id)] = a.content;
        m->special[size_t(a.id)] = a.special;
        (a.normalized ? m->normalized_trie : m->plain_trie).add(a.content, int32_t(&a - m->added.data()));
    }
    m->bytes.resize(m->token.size());
    for (size_t id = 0; id < m->token.size(); ++id) m->bytes[id] = token_to_bytes(m->token[id]);

    read_post_processor(r, top.find("post_processor"), *m);
    const json* dec = top.find("decoder");
    if (!dec || dec->is_null())
        r.fail("decoder", "is null, expected ByteLevel (the inverse of the byte-to-unicode table)");
    r.type(*dec, "decoder", {"ByteLevel"}, " (the inverse of the byte-to-unicode table)");
    byte_level_section(r, *dec, "decoder");
    return BpeTokenizer(std::move(m));
}

} // namespace mg::data
