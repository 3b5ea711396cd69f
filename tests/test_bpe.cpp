// tests/test_bpe.cpp: the byte-level BPE tokenizer (data/bpe.h) against Hugging Face tokenizers.
// The fixtures (tests/fixtures/bpe_*.json, made by tools/make_tokenizer_fixture.py; the versions
// of tokenizers and Python are in bpe_cases.json's "meta") hold two trained tokenizer.json files
// and, for them and eleven variants (patches of them), the ids tokenizers gives for awkward
// texts and the strings its decode gives for those ids and for byte sequences that are not UTF-8.
// Here, with no Python: every case encodes and decodes identically; the byte table's properties;
// the GPT-2 split; round trips of random text and of any bytes; long inputs; lookups; and every
// unsupported or malformed field of a file refused with an error that names it.
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "data/bpe.h"
#include "tensor/json.h"
#include "tests/helpers.h"

using namespace mg;
using namespace mg::data;
using nlohmann::json;

namespace {

const std::string kDir = "tests/fixtures/";

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

const std::string& main_json() {
    static const std::string text = read_text(kDir + "bpe_tokenizer.json");
    return text;
}

const BpeTokenizer& main_tokenizer() {
    static const BpeTokenizer tok = BpeTokenizer::load(kDir + "bpe_tokenizer.json");
    return tok;
}

// `base` (JSON text) with each [JSON pointer, value] of `patch` set, as text.
std::string patched(const std::string& base, const json& patch) {
    json j = json::parse(base);
    for (const json& op : patch) j[json::json_pointer(op[0].get<std::string>())] = op[1];
    return j.dump();
}

std::string bytes_of(const json& list) {
    std::string s;
    for (const json& b : list) s.push_back(char(b.get<int>()));
    return s;
}

// A readable form of a text for INFO: C escapes for control and non-ASCII bytes.
std::string shown(std::string_view s) {
    std::string out;
    for (unsigned char c : s.substr(0, 120)) {
        if (c >= 0x20 && c < 0x7F && c != '\\') out += char(c);
        else out += fmt::format("\\x{:02X}", c);
    }
    return s.size() > 120 ? out + "..." : out;
}

std::string concat_token_bytes(const BpeTokenizer& tok, const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += tok.token_bytes(id);
    return s;
}

} // namespace

TEST_CASE("bpe: the byte-to-unicode table is GPT-2's: 256 distinct printable characters", "[bpe]") {
    std::set<char32_t> seen;
    for (int b = 0; b < 256; ++b) {
        const char32_t cp = byte_to_unicode(uint8_t(b));
        seen.insert(cp);
        CHECK(unicode_to_byte(cp) == b);
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) CHECK(cp == char32_t(b)); // printable ASCII and Latin-1 map to themselves
        else CHECK((cp >= 0x100 && cp <= 0x143));
    }
    CHECK(seen.size() == 256);
    CHECK(byte_to_unicode(' ') == U'\u0120'); // 'Ġ'
    CHECK(byte_to_unicode('\n') == U'\u010A'); // 'Ċ'
    CHECK(byte_to_unicode(0x00) == U'\u0100');
    CHECK(byte_to_unicode(0x7F) == U'\u0121');
    CHECK(byte_to_unicode(0xA0) == U'\u0142');
    CHECK(byte_to_unicode(0xAD) == U'\u0143');
    CHECK(unicode_to_byte(U' ') == -1); // a space is no table character: "  " added tokens decode as they are
    CHECK(unicode_to_byte(U'\u0144') == -1);
    CHECK(unicode_to_byte(U'\u65E5') == -1);
}

TEST_CASE("bpe: the GPT-2 split, alternative by alternative", "[bpe]") {
    using V = std::vector<std::string_view>;
    CHECK(gpt2_split("") == V{});
    CHECK(gpt2_split("Hello world") == V{"Hello", " world"});
    CHECK(gpt2_split("it's we're they've I'm you'll he'd don't") ==
          V{"it", "'s", " we", "'re", " they", "'ve", " I", "'m", " you", "'ll", " he", "'d", " don", "'t"});
    CHECK(gpt2_split("IT'S") == V{"IT", "'", "S"}); // case-sensitive: 'S is no contraction
    CHECK(gpt2_split("'''s ' s") == V{"'''", "s", " '", " s"});
    CHECK(gpt2_split(" 123abc4.5") == V{" 123", "abc", "4", ".", "5"});
    CHECK(gpt2_split("a   b") == V{"a", "  ", " b"}); // the run less its last space; that one joins "b"
    CHECK(gpt2_split("a\t\tb") == V{"a", "\t", "\t", "b"}); // a tab does not join the word after it
    CHECK(gpt2_split("\n\nHello") == V{"\n", "\n", "Hello"});
    CHECK(gpt2_split("trailing   ") == V{"trailing", "   "}); // a run that ends the text stays whole
    CHECK(gpt2_split("x \n y") == V{"x", " \n", " y"});
    CHECK(gpt2_split("!!!?? ...") == V{"!!!??", " ..."});
    CHECK(gpt2_split("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC") == V{"caf\xC3\xA9", " \xE6\x97\xA5\xE6\x9C\xAC"});
    CHECK(gpt2_split("a\xC2\xA0"
                     "b") == V{"a", "\xC2\xA0", "b"}); // U+00A0 is \s, but only ' ' joins a word
    CHECK(gpt2_split("\xD9\xA1\xD9\xA2x") == V{"\xD9\xA1\xD9\xA2", "x"}); // Arabic-Indic digits are \p{N}
    CHECK(gpt2_split("e\xCC\x81") == V{"e", "\xCC\x81"}); // a combining mark is neither L nor N
    // bytes that are not UTF-8 are `other` characters, one each
    CHECK(gpt2_split("a\xFF\xFE"
                     "b \xC3") == V{"a", "\xFF\xFE", "b", " \xC3"});
    CHECK(gpt2_split("\xE2\x82"
                     "a") == V{"\xE2\x82", "a"});
}

TEST_CASE("bpe: utf8_lossy replaces each maximal ill-formed subpart with U+FFFD, as Rust does", "[bpe]") {
    const std::string R = "\xEF\xBF\xBD";
    CHECK(utf8_lossy("plain caf\xC3\xA9 \xF0\x9F\x98\x80") == "plain caf\xC3\xA9 \xF0\x9F\x98\x80");
    CHECK(utf8_lossy("\xC3") == R);
    CHECK(utf8_lossy("\xE2\x82") == R); // a truncated sequence is one subpart
    CHECK(utf8_lossy("\xF0\x9F\x98"
                     "a") == R + "a");
    CHECK(utf8_lossy("\xED\xA0\x80") == R + R + R); // a surrogate: ED then two lone continuations
    CHECK(utf8_lossy("\xC0\xAF") == R + R); // overlong
    CHECK(utf8_lossy("\xF4\x90\x80\x80") == R + R + R + R); // above U+10FFFF
    CHECK(utf8_lossy("\x80\x80"
                     "A") == R + R + "A");
}

TEST_CASE("bpe: every case recorded with tokenizers encodes and decodes identically", "[bpe]") {
    const json doc = json::parse(read_text(kDir + "bpe_cases.json"));
    INFO("fixture made with tokenizers " << doc["meta"]["tokenizers"] << ", Python " << doc["meta"]["python"]);
    std::map<std::string, BpeTokenizer> toks;
    for (const json& t : doc["tokenizers"]) {
        const std::string name = t["name"];
        const std::string text = patched(read_text(kDir + t["file"].get<std::string>()), t["patch"]);
        toks.emplace(name, BpeTokenizer::parse(text, name));
    }
    REQUIRE(toks.size() == 13); // the two files and eleven variants
    int encoded = 0, decoded = 0, with_raw = 0;
    for (const json& c : doc["cases"]) {
        const BpeTokenizer& tok = toks.at(c["tokenizer"].get<std::string>());
        std::vector<int32_t> ids;
        if (c.contains("text")) {
            const std::string text = c["text"];
            INFO(c["tokenizer"].get<std::string>() << ": encode \"" << shown(text) << "\"");
            ids = c["ids"].get<std::vector<int32_t>>();
            CHECK(tok.encode(text) == ids);
            ++encoded;
        } else {
            ids = c["decode_ids"].get<std::vector<int32_t>>();
            ++decoded;
        }
        INFO(c["tokenizer"].get<std::string>() << ": decode " << json(ids).dump());
        for (const bool skip : {false, true}) {
            const std::string key = skip ? "decoded_skip_special" : "decoded";
            const std::string raw_key = skip ? "raw_skip_special" : "raw";
            const std::string raw = tok.decode(ids, skip);
            CHECK(utf8_lossy(raw) == c[key].get<std::string>()); // tokenizers' str
            const std::string expected_raw = c.contains(raw_key) ? bytes_of(c[raw_key]) : c[key].get<std::string>();
            CHECK(shown(raw) == shown(expected_raw));
            with_raw += c.contains(raw_key);
        }
        CHECK(concat_token_bytes(tok, ids) == tok.decode(ids));
    }
    CHECK(encoded > 300);
    CHECK(decoded > 40);
    CHECK(with_raw > 20); // cases whose bytes are not UTF-8 are there
}

TEST_CASE("bpe: vocabulary lookups, special tokens and ids out of range", "[bpe]") {
    const BpeTokenizer& tok = main_tokenizer();
    CHECK(tok.vocab_size() == 801);
    CHECK(tok.token_to_id("<|endoftext|>") == 0);
    CHECK(tok.token_to_id("<|padding|>") == 1);
    CHECK(tok.token_to_id("LORD God") == 800);
    CHECK(tok.token_to_id("nothing like this") == std::nullopt);
    CHECK(tok.id_to_token(0) == "<|endoftext|>");
    CHECK(tok.id_to_token(800) == "LORD God");
    CHECK((tok.is_special(0) && tok.is_special(1) && !tok.is_special(800)));
    const std::optional<int32_t> the = tok.token_to_id("\xC4\xA0the"); // "Ġthe"
    REQUIRE(the.has_value());
    CHECK(!tok.is_special(*the));
    CHECK(tok.id_to_token(*the) == "\xC4\xA0the");
    CHECK(tok.token_bytes(*the) == " the");
    CHECK(tok.token_bytes(0) == "<|endoftext|>");
    CHECK(tok.token_bytes(800) == "LORD God"); // a space is no table character: kept as it is
    const std::vector<int32_t> ids = {0, *the, 800, 1};
    CHECK(tok.decode(ids) == "<|endoftext|> theLORD God<|padding|>");
    CHECK(tok.decode(ids, /*skip_special_tokens=*/true) == " theLORD God");
    CHECK(tok.decode({}) == "");

    const std::vector<int32_t> bad = {5, 7, 801};
    REQUIRE_ERROR_WITH(tok.decode(bad), "decode", "id 801 at index 2", "0..800");
    const std::vector<int32_t> negative = {-1};
    REQUIRE_ERROR_WITH(tok.decode(negative, true), "id -1 at index 0");
    REQUIRE_ERROR_WITH(tok.token_bytes(5000), "token_bytes", "id 5000");
    REQUIRE_ERROR_WITH(tok.id_to_token(-3), "id_to_token", "id -3");
    REQUIRE_ERROR_WITH(tok.is_special(801), "is_special", "id 801");
}

TEST_CASE("bpe: decode(encode(s)) == s for random UTF-8 text and for any bytes", "[bpe]") {
    const BpeTokenizer& tok = main_tokenizer();
    // pieces that exercise every path: words, contractions, digits, punctuation, whitespace of
    // every kind, 2-, 3- and 4-byte characters, combining marks, added and special tokens
    const std::vector<std::string> pool = {"the",
                                           " LORD",
                                           "And",
                                           "'s",
                                           "'ll",
                                           "'S",
                                           "42",
                                           "3.5",
                                           "!?",
                                           "...",
                                           " ",
                                           "  ",
                                           "\t",
                                           "\n",
                                           "\r\n",
                                           "\xC2\xA0",
                                           "\xE3\x80\x80",
                                           "caf\xC3\xA9",
                                           "\xE6\x97\xA5",
                                           "\xF0\x9F\x98\x80",
                                           "e\xCC\x81",
                                           "\xD7\xA9",
                                           "<|endoftext|>",
                                           "<|padding|>",
                                           "<|end",
                                           "LORD God",
                                           "_",
                                           "x",
                                           "Z"};
    std::mt19937 rng(7);
    for (int n = 0; n < 300; ++n) {
        std::string s;
        const int parts = int(rng() % 12);
        for (int k = 0; k < parts; ++k) s += pool[rng() % pool.size()];
        INFO("text \"" << shown(s) << "\"");
        const std::vector<int32_t> ids = tok.encode(s);
        CHECK(tok.decode(ids) == s);
        CHECK(concat_token_bytes(tok, ids) == s);
    }
    // any bytes at all: ill-formed UTF-8 is encoded byte by byte, and comes back
    for (int n = 0; n < 200; ++n) {
        std::string s(rng() % 40, '\0');
        for (char& c : s) c = char(rng() % 256);
        INFO("bytes \"" << shown(s) << "\"");
        const std::vector<int32_t> ids = tok.encode(s);
        CHECK(tok.decode(ids) == s);
        CHECK(concat_token_bytes(tok, ids) == s);
    }
}

TEST_CASE("bpe: a 100 KB word and a 100 KB run of spaces encode (no quadratic path) and round-trip", "[bpe]") {
    const BpeTokenizer& tok = main_tokenizer();
    std::mt19937 rng(11);
    std::string word(100'000, 'a');
    for (char& c : word) c = "theandLORDsig"[rng() % 13]; // letters that merge: one pre-token of 100 KB
    std::string spaces(100'000, ' ');
    std::string lines(100'000, '\n');
    std::string mixed = " " + spaces + "x" + spaces; // the run less one space, then " x", then a run to the end
    std::string angles(100'000, '<'); // every position starts an added-token search
    for (const std::string* s : {&word, &spaces, &lines, &mixed, &angles}) {
        const std::vector<int32_t> ids = tok.encode(*s);
        CHECK(!ids.empty());
        CHECK(ids.size() <= s->size());
        CHECK(tok.decode(ids) == *s);
    }
    CHECK(tok.encode(word).size() < word.size()); // it did merge
}

TEST_CASE("bpe: the tokenizer is shared by copies and safe to use from several threads", "[bpe]") {
    const BpeTokenizer tok = BpeTokenizer::load(kDir + "bpe_tokenizer.json"); // a fresh, empty cache
    std::vector<std::string> texts;
    for (int i = 0; i < 64; ++i)
        texts.push_back(fmt::format("And the LORD said unto {} man{}, it's {}", i, i % 7, i * 31));
    std::vector<std::vector<int32_t>> expected;
    for (const std::string& t : texts) expected.push_back(main_tokenizer().encode(t));
    std::vector<int> ok(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            const BpeTokenizer copy = tok;
            for (int round = 0; round < 20; ++round)
                for (size_t i = 0; i < texts.size(); ++i) ok[size_t(t)] += copy.encode(texts[i]) == expected[i];
        });
    for (std::thread& th : threads) th.join();
    for (int t = 0; t < 4; ++t) CHECK(ok[size_t(t)] == 20 * 64);
}

TEST_CASE("bpe: unsupported and malformed files are refused with an error naming the field", "[bpe]") {
    const std::string& base = main_json();
    // the main fixture with the value at one JSON pointer replaced, parsed as "bad.json"
    const auto bad = [&](const std::string& pointer, const json& value) {
        return BpeTokenizer::parse(patched(base, json::array({json::array({pointer, value})})), "bad.json");
    };
    const json split_gpt2 = {
        {"type", "Split"},
        {"pattern", {{"Regex", R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"}}},
        {"behavior", "Isolated"},
        {"invert", false}};
    const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};

    // the file as a whole
    REQUIRE_ERROR_WITH(BpeTokenizer::parse("{\"model\": ", "x.json"), "tokenizer 'x.json'", "not valid JSON");
    REQUIRE_ERROR_WITH(BpeTokenizer::parse(std::string(100, '[') + std::string(100, ']'), "deep.json"), "deep.json",
                       "nested more than 64");
    REQUIRE_ERROR_WITH(BpeTokenizer::parse("[]", "list.json"), "list.json", "expected a JSON object");
    REQUIRE_ERROR_WITH(BpeTokenizer::load("tests/fixtures/no_such_tokenizer.json"), "cannot read",
                       "no_such_tokenizer.json");
    REQUIRE_ERROR_WITH(bad("/extra", 1), "tokenizer 'bad.json'", "unknown key 'extra'");
    REQUIRE_ERROR_WITH(bad("/version", "2.0"), "version", "\"1.0\"");
    REQUIRE_ERROR_WITH(bad("/truncation", {{"max_length", 512}}), "truncation", "expected null");
    REQUIRE_ERROR_WITH(bad("/padding", {{"pad_id", 1}}), "padding", "expected null");
    REQUIRE_ERROR_WITH(bad("/normalizer", {{"type", "NFC"}}), "normalizer", "NFC", "expected null");

    // pre_tokenizer
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer", nullptr), "pre_tokenizer is null");
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "_"}}), "pre_tokenizer.type",
                       "Metaspace", "supported: ByteLevel, Sequence");
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer/use_regex", "yes"), "pre_tokenizer.use_regex", "true or false");
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer/bogus", true), "pre_tokenizer.bogus");
    json seq = {{"type", "Sequence"}, {"pretokenizers", {split_gpt2, byte_level}}};
    CHECK_NOTHROW(bad("/pre_tokenizer", seq));
    seq["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer", seq), "pre_tokenizer.pretokenizers[0].pattern", "the GPT-2 pattern");
    seq["pretokenizers"][0] = split_gpt2;
    seq["pretokenizers"][0]["behavior"] = "Removed";
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer", seq), "pretokenizers[0].behavior", "Isolated");
    seq["pretokenizers"][0] = split_gpt2;
    seq["pretokenizers"][0]["invert"] = true;
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer", seq), "pretokenizers[0].invert");
    seq["pretokenizers"] = {byte_level, split_gpt2};
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer", seq), "pretokenizers[0].type", "Split");
    seq["pretokenizers"] = {split_gpt2, {{"type", "Digits"}, {"individual_digits", true}}};
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer", seq), "pretokenizers[1].type", "Digits", "ByteLevel");
    seq["pretokenizers"] = json::array();
    REQUIRE_ERROR_WITH(bad("/pre_tokenizer", seq), "pre_tokenizer.pretokenizers", "non-empty");

    // model
    REQUIRE_ERROR_WITH(bad("/model/type", "WordPiece"), "model.type", "WordPiece", "BPE");
    REQUIRE_ERROR_WITH(bad("/model/dropout", 0.1), "model.dropout", "0.1", "dropout");
    CHECK_NOTHROW(bad("/model/dropout", 0.0));
    REQUIRE_ERROR_WITH(bad("/model/byte_fallback", true), "model.byte_fallback");
    REQUIRE_ERROR_WITH(bad("/model/continuing_subword_prefix", "##"), "model.continuing_subword_prefix", "\"##\"");
    CHECK_NOTHROW(bad("/model/end_of_word_suffix", ""));
    REQUIRE_ERROR_WITH(bad("/model/end_of_word_suffix", "</w>"), "model.end_of_word_suffix");
    REQUIRE_ERROR_WITH(bad("/model/unk_token", "<unk>"), "model.unk_token", "<unk>", "not in it");
    REQUIRE_ERROR_WITH(bad("/model/fuse_unk", 1), "model.fuse_unk", "true or false");
    REQUIRE_ERROR_WITH(bad("/model/ignore_merges", "no"), "model.ignore_merges");
    REQUIRE_ERROR_WITH(bad("/model/cache_capacity", 10), "unknown key 'model.cache_capacity'");
    REQUIRE_ERROR_WITH(bad("/model/vocab", json::array()), "model.vocab", "an object");
    REQUIRE_ERROR_WITH(bad("/model/vocab/\xC4\xA0the", 5000), "model.vocab[\"\xC4\xA0the\"]", "out of range", "0..799");
    REQUIRE_ERROR_WITH(bad("/model/vocab/\xC4\xA0the", 3), "model.vocab", "duplicate ids");
    REQUIRE_ERROR_WITH(bad("/model/vocab/\xC4\xA0the", "x"), "model.vocab[\"\xC4\xA0the\"]", "an integer id");
    REQUIRE_ERROR_WITH(bad("/model/merges/3", {"t", "zzz"}), "model.merges[3]", "\"zzz\"", "not in model.vocab");
    REQUIRE_ERROR_WITH(bad("/model/merges/5", {"q", "q"}), "model.merges[5]", "makes", "\"qq\"");
    REQUIRE_ERROR_WITH(bad("/model/merges/3", "t h"), "model.merges[3]", "pair");
    REQUIRE_ERROR_WITH(bad("/model/merges/3", {"t"}), "model.merges[3]", "pair");
    REQUIRE_ERROR_WITH(bad("/model/merges", "t h"), "model.merges", "all \"a b\" strings");
    const std::string strings = read_text(kDir + "bpe_tokenizer_strings.json");
    CHECK_NOTHROW(BpeTokenizer::parse(strings, "strings"));
    REQUIRE_ERROR_WITH(
        BpeTokenizer::parse(patched(strings, json::array({json::array({"/model/merges/0", "t h e"})})), "s"),
        "model.merges[0]", "one space");
    REQUIRE_ERROR_WITH(
        BpeTokenizer::parse(patched(strings, json::array({json::array({"/model/merges/2", {"t", "h"}})})), "s"),
        "model.merges[2]", "a string");

    // added tokens
    REQUIRE_ERROR_WITH(bad("/added_tokens/2/id", 805), "added_tokens[2].id", "805",
                       "tokenizers gives \"LORD God\" id 800");
    REQUIRE_ERROR_WITH(bad("/added_tokens/0/id", 7), "added_tokens[0].id", "its id in model.vocab");
    REQUIRE_ERROR_WITH(bad("/added_tokens/2/content", ""), "added_tokens[2].content", "non-empty");
    REQUIRE_ERROR_WITH(bad("/added_tokens/2/content", "<|padding|>"), "added_tokens[2].content",
                       "also the content of the added token with id 1");
    REQUIRE_ERROR_WITH(bad("/added_tokens/1/lstrip", "no"), "added_tokens[1].lstrip");
    REQUIRE_ERROR_WITH(bad("/added_tokens/0/weight", 1), "unknown key 'added_tokens[0].weight'");
    REQUIRE_ERROR_WITH(bad("/added_tokens", {{"a", 1}}), "added_tokens", "an array");

    // post_processor and decoder
    REQUIRE_ERROR_WITH(bad("/post_processor", {{"type", "RobertaProcessing"}}), "post_processor.type",
                       "RobertaProcessing", "TemplateProcessing");
    const json tmpl = json::parse(R"({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<|endoftext|>"]}}})");
    CHECK(BpeTokenizer::parse(patched(base, json::array({json::array({"/post_processor", tmpl})})), "t").encode("a") ==
          std::vector<int32_t>{0, main_tokenizer().encode("a")[0]});
    json t2 = tmpl;
    t2.erase("pair");
    CHECK_NOTHROW(bad("/post_processor", t2));
    t2.erase("single");
    REQUIRE_ERROR_WITH(bad("/post_processor", t2), "post_processor.single", "missing");
    t2 = tmpl;
    t2["single"][0]["SpecialToken"]["id"] = "</s>";
    REQUIRE_ERROR_WITH(bad("/post_processor", t2), "post_processor.single[0].SpecialToken.id", "</s>",
                       "not in post_processor.special_tokens");
    t2 = tmpl;
    t2["single"][1]["Sequence"]["id"] = "B";
    REQUIRE_ERROR_WITH(bad("/post_processor", t2), "post_processor.single[1].Sequence.id", "\"A\"");
    t2 = tmpl;
    t2["special_tokens"]["<s>"]["ids"] = {900};
    REQUIRE_ERROR_WITH(bad("/post_processor", t2), "special_tokens[\"<s>\"].ids", "900", "0..800");
    const json bert = {{"type", "BertProcessing"}};
    REQUIRE_ERROR_WITH(bad("/post_processor", {{"type", "Sequence"}, {"processors", {tmpl, bert}}}),
                       "post_processor.processors[1].type", "BertProcessing");
    REQUIRE_ERROR_WITH(bad("/decoder", nullptr), "decoder is null", "ByteLevel");
    REQUIRE_ERROR_WITH(bad("/decoder", {{"type", "WordPiece"}, {"prefix", "##"}}), "decoder.type", "WordPiece",
                       "ByteLevel");
    REQUIRE_ERROR_WITH(bad("/decoder/add_prefix_space", 3), "decoder.add_prefix_space");
}
