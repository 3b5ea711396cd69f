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

// At most max_chars characters of j.dump(), then "... (N characters)". j must come from
// parse_json (bounded depth) or from our own code.
template <typename Json> std::string json_excerpt(const Json& j, size_t max_chars = 80) {
    std::string s = j.dump();
    if (s.size() <= max_chars) return s;
    return s.substr(0, max_chars) + "... (" + std::to_string(s.size()) + " characters)";
}

// The same for raw text (a flag value, a line of a file).
inline std::string text_excerpt(std::string_view s, size_t max_chars = 80) {
    if (s.size() <= max_chars) return std::string(s);
    return std::string(s.substr(0, max_chars)) + "... (" + std::to_string(s.size()) + " characters)";
}

// Parses `text`; throws mg::Error "<what>: ..." when it is not JSON or nests deeper than
// kMaxJsonDepth.
template <typename Json = nlohmann::json> Json parse_json(std::string_view text, std::string_view what) {
    const int depth = json_nesting_depth(text);
    MG_CHECK(depth <= kMaxJsonDepth, "{}: JSON nested more than {} levels deep", what, kMaxJsonDepth);
    try {
        return Json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(fmt::format("{}: not valid JSON: {}", what, e.what()));
    }
}

// As parse_json, but a value that is not JSON (or nests too deep) gives a discarded value
// instead of an error (is_discarded()).
template <typename Json = nlohmann::json> Json parse_json_or_discard(std::string_view text) {
    if (json_nesting_depth(text) > kMaxJsonDepth) return Json(Json::value_t::discarded);
    return Json::parse(text, nullptr, /*allow_exceptions=*/false);
}

} // namespace mg
