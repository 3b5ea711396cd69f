// data/bpe_json.cpp: see data/bpe.h: reading a tokenizer.json (its model, added tokens, pre-
// tokenizer, post-processor and decoder) into BpeTokenizer::Impl (data/bpe_impl.h), refusing by
// its JSON path anything the encoder would not reproduce exactly.
#include <fmt/format.h>

#include <algorithm>

#include "data/bpe.h"
#include "data/bpe_impl.h"
#include "data/read_file.h"
#include "tensor/check.h"
#include "tensor/json.h"

namespace mg::data {

using namespace bpe_detail;
using nlohmann::json;

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
