// data/bpe.cpp: see data/bpe.h: encoding and decoding. In reading order: UTF-8 and the character
// classes, the byte table, the GPT-2 scanner, the added-token matcher, BPE merging, the public
// functions. Reading tokenizer.json is data/bpe_json.cpp; the types both share, data/bpe_impl.h.
#include "data/bpe.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "data/bpe_impl.h"
#include "data/unicode_tables.h"
#include "tensor/check.h"
#include "tensor/json.h"

namespace mg::data {

using namespace bpe_detail;

namespace {

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

// Step 4: bytes -> the string of their table characters (the form vocab and merges are written in).
std::string to_byte_level(std::string_view bytes) {
    const ByteTable& t = byte_table();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) out += t.to_utf8[b];
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

} // namespace

// ---- bpe_detail (data/bpe_impl.h) ------------------------------------------------------------

namespace bpe_detail {

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

} // namespace bpe_detail

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

} // namespace mg::data
