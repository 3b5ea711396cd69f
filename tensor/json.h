// tensor/json.h: reading JSON from outside (config files, flag values, checkpoint headers and
// metadata, JSONL rows) without trusting its shape, for every layer above (data/, nn/, train/).
//
// nlohmann::json parses any nesting depth, but printing a value (dump(), which error messages use)
// recurses once per level: 100,000 nested arrays overflow the stack. parse_json refuses nesting
// deeper than kMaxJsonDepth before parsing, and json_excerpt cuts an echoed value to a short
// prefix, so an error line stays one line however large the bad value is.
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensor/check.h"

namespace mg {

inline constexpr int kMaxJsonDepth = 64;

// The deepest nesting of arrays and objects in `text` (brackets inside strings do not count); it
// stops counting past limit + 1.
inline int json_nesting_depth(std::string_view text, int limit = kMaxJsonDepth) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
            if (deepest > limit) return deepest;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return deepest;
}

// The offset of the first byte of `s` that is not part of well-formed UTF-8 (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), or npos when all of it is.
inline size_t utf8_invalid_at(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        size_t n = 0;
        unsigned lo = 0x80, hi = 0xBF; // the allowed range of the second byte
        if (c < 0x80) n = 0;
        else if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return i;
        if (i + n >= s.size()) return i; // truncated sequence
        for (size_t k = 1; k <= n; ++k) {
            const unsigned char b = static_cast<unsigned char>(s[i + k]);
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i;
        }
        i += n + 1;
    }
    return std::string_view::npos;
}

// Whether c is a control character (C0 or DEL), which an echo must not print raw.
inline bool is_control_char(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; }
inline bool has_control_char(std::string_view s) { return std::any_of(s.begin(), s.end(), is_control_char); }

// Raw text (a flag value, a key, a line of a file) for an error message: at most max_chars bytes,
// then "... (N characters)"; bytes that are not well-formed UTF-8 and control characters are
// written \xNN, so the message stays one printable line whatever the input held.
inline std::string text_excerpt(std::string_view s, size_t max_chars = 80) {
    const std::string_view head = s.substr(0, std::min(s.size(), max_chars));
    std::string out;
    size_t i = 0;
    while (i < head.size()) {
        const size_t bad = utf8_invalid_at(head.substr(i));
        const size_t good = bad == std::string_view::npos ? head.size() - i : bad;
        for (size_t k = i; k < i + good; ++k) {
            if (is_control_char(head[k])) out += fmt::format("\\x{:02X}", static_cast<unsigned char>(head[k]));
            else out += head[k];
        }
        i += good;
        if (i < head.size()) out += fmt::format("\\x{:02X}", static_cast<unsigned char>(head[i++]));
    }
    if (s.size() > max_chars) out += "... (" + std::to_string(s.size()) + " characters)";
    return out;
}

// At most max_chars characters of j.dump(), then "... (N characters)". j must come from
// parse_json (bounded depth) or from our own code; a string that is not UTF-8 (a flag's bytes)
// is printed with U+FFFD for its bad bytes instead of making dump() throw.
template <typename Json> std::string json_excerpt(const Json& j, size_t max_chars = 80) {
    return text_excerpt(j.dump(-1, ' ', false, Json::error_handler_t::replace), max_chars); // a cut sequence: \xNN
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag (library internals):
// "parse error at line 1, column 5: syntax error while parsing object key - ...".
inline std::string json_error_text(const nlohmann::json::exception& e) {
    std::string_view m = e.what();
    if (m.starts_with("[json.exception.")) {
        const size_t close = m.find("] ");
        if (close != std::string_view::npos) m.remove_prefix(close + 2);
    }
    return text_excerpt(m, 200);
}

// obj[key] when obj is an object whose `key` holds a string; otherwise `fallback`. For a field of
// JSON that nothing has validated yet (a metrics row, a checkpoint's config before its reader has
// run), where nlohmann's value() would throw a type error on a number or a non-object.
inline std::string json_string_at(const nlohmann::json& obj, const std::string& key, std::string fallback) {
    if (!obj.is_object()) return fallback;
    const auto it = obj.find(key);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// Parses `text`; throws mg::Error "<what>: ..." when it is not JSON or nests deeper than
// kMaxJsonDepth.
template <typename Json = nlohmann::json> Json parse_json(std::string_view text, std::string_view what) {
    const int depth = json_nesting_depth(text);
    MG_CHECK(depth <= kMaxJsonDepth, "{}: JSON nested more than {} levels deep", what, kMaxJsonDepth);
    try {
        return Json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(fmt::format("{}: not valid JSON: {}", what, json_error_text(e)));
    }
}

// As parse_json, but a value that is not JSON (or nests too deep) gives a discarded value
// instead of an error (is_discarded()).
template <typename Json = nlohmann::json> Json parse_json_or_discard(std::string_view text) {
    if (json_nesting_depth(text) > kMaxJsonDepth) return Json(Json::value_t::discarded);
    return Json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// ---- reading a config object key by key --------------------------------------------------------
// The one reader of every config (nn::MambaConfig, train::TrainConfig): one JSON object whose
// dotted path is `prefix` ("" or "task." or "model.global_selection."), inside the config named
// `where` ("train config", "model config"). Unknown keys are refused on construction; each
// reader leaves its field alone when the key is absent and otherwise checks the value, so that
// a bad key gives the same message wherever the config came from (a file, a flag, a checkpoint):
//   train config: model.d_model is "big", expected an integer >= 1
class JsonSection {
public:
    JsonSection(const nlohmann::json& j, std::string where, std::string prefix, const std::vector<std::string>& allowed)
        : j_(j), where_(std::move(where)), prefix_(std::move(prefix)) {
        MG_CHECK(j.is_object(), "{}: {} is {}, expected a JSON object", where_,
                 prefix_.empty() ? std::string("the config") : prefix_.substr(0, prefix_.size() - 1), json_excerpt(j));
        for (const auto& [key, v] : j.items())
            MG_CHECK(std::find(allowed.begin(), allowed.end(), key) != allowed.end(),
                     "{}: unknown key '{}{}'; allowed keys{}: {}", where_, prefix_, text_excerpt(key, 40),
                     prefix_.empty() ? "" : fmt::format(" in {}", prefix_.substr(0, prefix_.size() - 1)),
                     fmt::join(allowed, ", "));
    }
    const nlohmann::json* find(const std::string& key) const {
        auto it = j_.find(key);
        return it == j_.end() ? nullptr : &*it;
    }
    const std::string& where() const { return where_; }
    std::string name(const std::string& key) const { return prefix_ + key; }
    [[noreturn]] void fail(const std::string& key, const nlohmann::json& v, const std::string& expected) const {
        throw Error(fmt::format("{}: {} is {}, expected {}", where_, name(key), json_excerpt(v), expected));
    }
    void integer(const std::string& key, int64_t& out, int64_t min) const {
        const nlohmann::json* v = find(key);
        if (!v) return;
        if (!v->is_number_integer() || v->get<int64_t>() < min)
            fail(key, *v, min == 0 ? "an integer >= 0" : fmt::format("an integer >= {}", min));
        out = v->get<int64_t>();
    }
    void unsigned_integer(const std::string& key, uint64_t& out) const {
        const nlohmann::json* v = find(key);
        if (!v) return;
        if (!v->is_number_unsigned()) fail(key, *v, "an integer >= 0");
        out = v->get<uint64_t>();
    }
    void number(const std::string& key, double& out, double lo, double hi, const char* range) const {
        const nlohmann::json* v = find(key);
        if (!v) return;
        if (!v->is_number() || !(v->get<double>() >= lo && v->get<double>() <= hi))
            fail(key, *v, fmt::format("a number {}", range));
        out = v->get<double>();
    }
    void boolean(const std::string& key, bool& out) const {
        const nlohmann::json* v = find(key);
        if (!v) return;
        if (!v->is_boolean()) fail(key, *v, "true or false");
        out = v->get<bool>();
    }
    void string(const std::string& key, std::string& out) const {
        const nlohmann::json* v = find(key);
        if (!v) return;
        if (!v->is_string()) fail(key, *v, "a string");
        // Config values are stored as JSON (config.json, checkpoints), which must be UTF-8.
        const std::string& text = v->get_ref<const std::string&>();
        if (const size_t bad = utf8_invalid_at(text); bad != std::string_view::npos)
            fail(key, *v, fmt::format("UTF-8 text (byte {} is 0x{:02X}; a config is stored as JSON, which is UTF-8)", bad,
                                      static_cast<unsigned char>(text[bad])));
        out = text;
    }
    // One of `allowed`, returned as the string.
    std::string choice(const std::string& key, const nlohmann::json& v, const std::vector<std::string>& allowed) const {
        if (!v.is_string() || std::find(allowed.begin(), allowed.end(), v.get<std::string>()) == allowed.end())
            fail(key, v, fmt::format("one of: {}", fmt::join(allowed, ", ")));
        return v.get<std::string>();
    }

private:
    const nlohmann::json& j_;
    std::string where_, prefix_;
};

} // namespace mg
