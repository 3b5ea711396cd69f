#!/usr/bin/env python3
"""tools/make_tokenizer_fixture.py OUT_DIR [CORPUS]: byte-level BPE fixtures from Hugging Face
`tokenizers` (pip install tokenizers), for tests/test_bpe.cpp, which checks data/bpe.h against
them with no Python.

CORPUS defaults to data/corpus/kjv.txt (`make corpus`: the King James Bible, public domain); the
tokenizers are trained on its first ~200 KB, cut at a line end. Writes to OUT_DIR:

  bpe_tokenizer.json          configured as GPT-NeoX's tokenizer (EleutherAI/gpt-neox-20b, the one
                              pretrained Mamba models use): BPE, vocab 800 with all 256 byte
                              characters (initial_alphabet), ByteLevel pre-tokenizer
                              (add_prefix_space false), ByteLevel post-processor and decoder, special
                              tokens <|endoftext|> (id 0) and <|padding|> (id 1), and one
                              non-special added token "LORD God" (id 800). Saved by the library
                              itself (merges as [a, b] pairs, as tokenizers >= 0.20 writes them).
  bpe_tokenizer_strings.json  a second one, vocab 400, trained WITHOUT the full byte alphabet (only
                              the corpus's characters: digits, tabs and non-ASCII bytes are not in
                              it, so tokenizers drops them, or maps them to unk_token when one is
                              set), with its merges rewritten as "a b" strings, the form tokenizers
                              < 0.20 wrote and still reads (checked here: it loads and encodes as the
                              pair form does).
  bpe_cases.json              {"meta": versions and sources,
                               "tokenizers": [{"name", "file", "patch"}]: a tokenizer is a file with
                                   a patch applied, a list of [JSON pointer, value] to set (how the
                                   variants below are stored without repeating the vocabulary),
                               "cases": [...]}.
    An encode case: {"tokenizer", "text", "ids", "decoded", "decoded_skip_special"}: text is a JSON
    string (tokenizers takes a str, so every text is valid UTF-8), ids is Tokenizer.encode(text).ids
    and decoded / decoded_skip_special are Tokenizer.decode(ids, skip_special_tokens=False / True).
    A decode case: {"tokenizer", "decode_ids", "decoded", "decoded_skip_special"}: id sequences
    whose bytes are not valid UTF-8 (a lone 0xC3, truncated and overlong sequences, surrogates)
    and random ones. decoded is tokenizers' str (its decoder's String::from_utf8_lossy puts U+FFFD
    for each ill-formed subpart); when the raw bytes differ from it, "raw" / "raw_skip_special"
    hold them as a list of byte values, computed here from the byte-to-unicode table (each token's
    characters mapped back to bytes, or its UTF-8 when a character is not in the table).

The variants (patches of the two files): prefix_space (add_prefix_space true), sequence_split
(Sequence[Split(GPT-2 pattern), ByteLevel(use_regex false)]), sequence_prefix (the same with
add_prefix_space true: tokenizers puts the space in front of every split piece), ignore_merges,
added_flags (more added tokens: lstrip, rstrip, single_word, normalized true/false, a prefix of
another, one made of table characters, a whitespace run as GPT-NeoX has), template
(TemplateProcessing "<|endoftext|> $A"), post_sequence (Sequence[ByteLevel, TemplateProcessing]),
strings_unk and strings_unk_fused (unk_token set, fuse_unk false / true).
"""
import json
import os
import platform
import random
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def bytes_to_unicode():
    """GPT-2's table, written out independently of data/bpe.cpp: printable Latin-1 bytes map to
    themselves, the other 68 to U+0100 + n in byte order."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + n)
            n += 1
    return table


BYTE_OF = {c: b for b, c in bytes_to_unicode().items()}


def raw_bytes(tok, ids, skip_special):
    out = bytearray()
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    for i in ids:
        t = tok.id_to_token(i)
        if skip_special and t in specials:
            continue
        if all(c in BYTE_OF for c in t):
            out += bytes(BYTE_OF[c] for c in t)
        else:
            out += t.encode("utf-8")
    return bytes(out)


def train(text_path, vocab_size, specials, full_alphabet):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    kw = {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet()} if full_alphabet else {}
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False, **kw)
    tok.train([text_path], trainer)
    return tok


def patched(base_json, patch):
    j = json.loads(base_json)
    for pointer, value in patch:
        keys = pointer.strip("/").split("/")
        node = j
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    return Tokenizer.from_str(json.dumps(j))


# ---- the texts -------------------------------------------------------------------------------------
OUTSIDE = [
    "The quick brown fox jumps over the lazy dog.",
    "Tokenizers split text into pieces; models see ids, not letters!",
    "def square(x):\n    return x ** 2  # four spaces of indent\n",
    "E-mail: someone@example.com, web: https://example.org/a?b=c&d=e",
]
CONTRACTIONS = ["it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "IT'S", "DON'T", "We'RE",
                "O'Brien's", "'s", "''s", "' s", "rock 'n' roll", "'tis", "the LORD's house", "can't've"]
NUMBERS = ["1234567890", "3.14159", "1,000,000", "2024-01-01", "v1.2.3", "abc123def", "\u0661\u0662\u0663",
           "\u216b", "\u00bd and \u00b2", " 42", "  7"]
PUNCT = ["!!!???...", "--->", "a...b", "(((x)))", "#$%&*@^", "\"quoted\"", "[a], {b}; <c>", " ..."]
WHITESPACE = ["", " ", "  ", "   a", "  a", "a  ", "a   b", "\t", "\ta", "a\tb", "\n", "\n\n\n", "a\n\nb", "\r\n",
              "line one\r\nline two\r\n", "trailing   ", "   leading", " \t \n ", "a\u00a0b", "a\u3000b",
              "a\u2028b", "\u0085x", "x \n y", "  \n\n  x"]
UNICODE = ["caf\u00e9", "na\u00efve r\u00e9sum\u00e9", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
           "\u4e2d\u6587", "\ud55c\uad6d\uc5b4", "emoji \U0001F600\U0001F44D\U0001F3FD",
           "\U0001F468\u200d\U0001F469\u200d\U0001F467", "e\u0301 vs \u00e9", "\u1f08\u03c1\u03c7\u1fc7",
           "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
           "\u0645\u0631\u062d\u0628\u0627", "a\u200fb", "\ufb01", "\U0001D518\U0001D52B\U0001D526", "\u00a9\u00ae\u2122",
           "\u0000\u0001\u007f", "\ufeffBOM", "\u00ad soft hyphen",
           # letters new in Unicode 15.0-16.0 (CJK extensions H and I, Egyptian hieroglyphs extended-A,
           # Garay) and in 17.0 (CJK extension J, Sidetic): tokenizers 0.23.3's regex knows the former only
           "a\U00031350b\U0002EBF0c\U00013460d\U00010D4Ae", "a\U000323B0b\U00010940c"]
SPECIAL = ["a<|endoftext|>b", "<|endoftext|>", "<|endoftext|><|endoftext|>", "<|endoftext|>start", "end<|endoftext|>",
           "<|padding|><|endoftext|>", "<|endoftext", "<|endoftext|", "<<|endoftext|>>", " <|endoftext|> ",
           "text <|padding|> text", "<|ENDOFTEXT|>"]
# the same merge at several places ("l l" in "lll"): the leftmost goes first ("ll" "l", not "l" "ll")
TIES = ["lll", "llll", "tell llll", "eeeee", "sss", "ooo", "nnnnnn"]
ADDED = ["LORD God", "the LORD God said", "LORD Godhead", "LORD  God", "xLORD Gody", "LORD God<|endoftext|>LORD God"]


def corpus_lines(text, n, seed):
    lines = [l for l in text.split("\n") if l]
    rng = random.Random(seed)
    return [rng.choice(lines) for _ in range(n)]


def main():
    out_dir = sys.argv[1]
    corpus = sys.argv[2] if len(sys.argv) > 2 else "data/corpus/kjv.txt"
    with open(corpus, encoding="utf-8") as f:
        full = f.read()
    cut = full.rfind("\n", 0, 200_000) + 1
    slice_text = full[:cut]
    os.makedirs(out_dir, exist_ok=True)
    slice_path = os.path.join(out_dir, ".kjv_slice.txt")
    with open(slice_path, "w", encoding="utf-8") as f:
        f.write(slice_text)

    main_tok = train(slice_path, 800, ["<|endoftext|>", "<|padding|>"], True)
    main_tok.add_tokens([AddedToken("LORD God")])
    main_path = os.path.join(out_dir, "bpe_tokenizer.json")
    main_tok.save(main_path)
    main_json = open(main_path, encoding="utf-8").read()

    small = train(slice_path, 400, ["<|endoftext|>"], False)
    sj = json.loads(small.to_str())
    pairs = sj["model"]["merges"]
    assert all(isinstance(p, list) for p in pairs), "this tokenizers writes merges as strings: swap the two forms here"
    sj["model"]["merges"] = [f"{a} {b}" for a, b in pairs]
    strings_json = json.dumps(sj, ensure_ascii=False, indent=1)
    strings_tok = Tokenizer.from_str(strings_json)
    for t in OUTSIDE + CONTRACTIONS:
        assert strings_tok.encode(t).ids == small.encode(t).ids, t
    with open(os.path.join(out_dir, "bpe_tokenizer_strings.json"), "w", encoding="utf-8") as f:
        f.write(strings_json)
    os.remove(slice_path)

    # ---- variants -----------------------------------------------------------------------------------
    def serialized(obj_setter, key):
        t = Tokenizer.from_str(main_json)
        obj_setter(t)
        return json.loads(t.to_str())[key]

    seq = lambda aps: serialized(lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=aps, use_regex=False)])), "pre_tokenizer")
    template = processors.TemplateProcessing(single="<|endoftext|> $A", pair="<|endoftext|> $A <|endoftext|> $B:1",
                                             special_tokens=[("<|endoftext|>", 0)])
    flags_tok = Tokenizer.from_str(main_json)
    flags_tok.add_tokens([AddedToken("<|end", normalized=False), AddedToken("[R]", rstrip=True, normalized=False),
                          AddedToken("amen", single_word=True), AddedToken("\u0120\u0120"), AddedToken("  "),
                          AddedToken("God", normalized=False)])
    flags_tok.add_special_tokens([AddedToken("[L]", lstrip=True, normalized=False),
                                  AddedToken("<S>", lstrip=True, rstrip=True, normalized=False)])
    variants = [
        ("main", "bpe_tokenizer.json", []),
        ("prefix_space", "bpe_tokenizer.json", [["/pre_tokenizer/add_prefix_space", True]]),
        ("sequence_split", "bpe_tokenizer.json", [["/pre_tokenizer", seq(False)]]),
        ("sequence_prefix", "bpe_tokenizer.json", [["/pre_tokenizer", seq(True)]]),
        ("ignore_merges", "bpe_tokenizer.json", [["/model/ignore_merges", True]]),
        # merges[4] ("Ġth e") replaced by a second "t h", merges[100] by a second "e r": the last rank
        # of a repeated pair counts ("ere" is then "e re"), and "Ġthe" is in the vocab but unreachable
        # by merges, which ignore_merges tells apart
        ("dup_merge", "bpe_tokenizer.json", [["/model/merges/4", ["t", "h"]], ["/model/merges/100", ["e", "r"]]]),
        ("dup_merge_ignore", "bpe_tokenizer.json", [["/model/merges/4", ["t", "h"]], ["/model/merges/100", ["e", "r"]],
                                                    ["/model/ignore_merges", True]]),
        ("added_flags", "bpe_tokenizer.json", [["/added_tokens", json.loads(flags_tok.to_str())["added_tokens"]]]),
        ("template", "bpe_tokenizer.json",
         [["/post_processor", serialized(lambda t: setattr(t, "post_processor", template), "post_processor")]]),
        ("post_sequence", "bpe_tokenizer.json", [["/post_processor", serialized(lambda t: setattr(
            t, "post_processor", processors.Sequence([processors.ByteLevel(trim_offsets=False), template])),
            "post_processor")]]),
        ("strings", "bpe_tokenizer_strings.json", []),
        ("strings_unk", "bpe_tokenizer_strings.json", [["/model/unk_token", "<|endoftext|>"]]),
        ("strings_unk_fused", "bpe_tokenizer_strings.json",
         [["/model/unk_token", "<|endoftext|>"], ["/model/fuse_unk", True]]),
    ]
    base = {"bpe_tokenizer.json": main_json, "bpe_tokenizer_strings.json": strings_json}
    toks = {name: patched(base[f], p) for name, f, p in variants}
    assert toks["added_flags"].token_to_id("<S>") is not None

    # ---- cases --------------------------------------------------------------------------------------
    cases = []

    def enc(name, text):
        t = toks[name]
        ids = t.encode(text).ids
        c = {"tokenizer": name, "text": text, "ids": ids}
        add_decoded(c, t, ids)
        cases.append(c)

    def add_decoded(c, t, ids):
        for key, skip in (("decoded", False), ("decoded_skip_special", True)):
            s = t.decode(ids, skip_special_tokens=skip)
            c[key] = s
            raw = raw_bytes(t, ids, skip)
            if raw != s.encode("utf-8"):
                c["raw" + key[len("decoded"):]] = list(raw)

    prose_in = corpus_lines(slice_text, 6, 1)
    prose_out = corpus_lines(full[len(full) * 9 // 10:], 4, 2)  # Revelation etc.: not in the training slice
    long_cases = ["a" + " " * 300 + "b", "x" * 400, "LORD " * 30, "\n" * 50 + "end"]
    main_texts = (prose_in + prose_out + OUTSIDE + CONTRACTIONS + NUMBERS + PUNCT + WHITESPACE + UNICODE + SPECIAL
                  + ADDED + TIES + long_cases)
    for text in main_texts:
        enc("main", text)
    common = (prose_in[:1] + OUTSIDE[:2] + CONTRACTIONS[:5] + NUMBERS[:3] + WHITESPACE[:16] + UNICODE[:3]
              + SPECIAL[:4] + ADDED[:2])
    for name in ("prefix_space", "sequence_split", "sequence_prefix"):
        for text in common:
            enc(name, text)
    for name in ("ignore_merges", "template", "post_sequence"):
        for text in prose_in[:1] + ["", " ", "a<|endoftext|>b", "<|endoftext|>", "the LORD God"]:
            enc(name, text)
    dup_texts = prose_in[:2] + [" the", "the", "there", " here", "were", "ere", " ere", "The other"]
    for name in ("main", "dup_merge", "dup_merge_ignore"):
        for text in dup_texts:
            enc(name, text)
    added_texts = ["<|end of it", "<|endoftext|>", "a<|end<|endoftext|>", "x [R]   y", "x   [L] y", "a  <S>  b",
                   "[L][L]  [R]  [R]", "amen", " amen ", "amend", "Amen amen.", "_amen", "amen_", "x\u0120\u0120y",
                   "a    b", "a     b", "LORD God", "the God of gods", "  [R]  [L]  ", "\u00e9amen", "amen\u00e9"]
    for text in added_texts + SPECIAL[:4] + WHITESPACE[:8]:
        enc("added_flags", text)
    strings_texts = (["In the beginning God created the heaven and the earth.", "caf\u00e9 \u65e5\u672c",
                      "digits 0123 and\ttabs", "\u20ac5", "<|endoftext|>", "a<|endoftext|>b", "\u00e9\u00e9\u00e9x",
                      "x\u00e9y\u00e9\u00e9z"] + CONTRACTIONS[:3] + WHITESPACE[:6] + UNICODE[:4])
    for name in ("strings", "strings_unk", "strings_unk_fused"):
        for text in strings_texts:
            enc(name, text)

    # decode cases: bytes that are not valid UTF-8, and random id sequences
    v = toks["main"].get_vocab()
    byte_id = {b: v[c] for b, c in bytes_to_unicode().items()}
    byte_seqs = [[0xC3], [0xC3, 0xA9], [0xC3, 0xC3], [0xE2, 0x82], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98],
                 [0xFF], [0x80], [0x80, 0x80, 0x41], [0xED, 0xA0, 0x80], [0xC0, 0xAF], [0xE0, 0x80, 0xAF],
                 [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x41], [0x41, 0xE2, 0x41, 0xF0, 0x9F, 0x41]]
    for seq_bytes in byte_seqs:
        ids = [byte_id[b] for b in seq_bytes]
        for wrap in (ids, [0] + ids + [1]):
            c = {"tokenizer": "main", "decode_ids": wrap}
            add_decoded(c, toks["main"], wrap)
            cases.append(c)
    rng = random.Random(3)
    for name in ("main", "added_flags", "strings"):
        n = toks[name].get_vocab_size()
        for _ in range(8):
            ids = [rng.randrange(n) for _ in range(rng.randrange(1, 12))]
            c = {"tokenizer": name, "decode_ids": ids}
            add_decoded(c, toks[name], ids)
            cases.append(c)

    meta = {
        "made_by": "tools/make_tokenizer_fixture.py",
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "corpus": f"{os.path.basename(corpus)}: the first {len(slice_text.encode())} bytes (whole lines) train both",
        "main": "BPE vocab 800 (all 256 byte characters), ByteLevel(add_prefix_space=false), specials "
                "<|endoftext|>=0 <|padding|>=1, added 'LORD God'=800",
        "strings": "BPE vocab 400 without the full byte alphabet; merges rewritten as 'a b' strings",
    }
    doc = {"meta": meta, "tokenizers": [{"name": n, "file": f, "patch": p} for n, f, p in variants], "cases": cases}
    with open(os.path.join(out_dir, "bpe_cases.json"), "w", encoding="utf-8") as f:
        f.write("{\n\"meta\": " + json.dumps(meta, ensure_ascii=False) + ",\n\"tokenizers\": [\n")
        f.write(",\n".join(json.dumps(t, ensure_ascii=False) for t in doc["tokenizers"]))
        f.write("\n],\n\"cases\": [\n")
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]\n}\n")
    sizes = {n: os.path.getsize(os.path.join(out_dir, n)) for n in
             ("bpe_tokenizer.json", "bpe_tokenizer_strings.json", "bpe_cases.json")}
    print(f"make_tokenizer_fixture: tokenizers {tokenizers.__version__}, {len(cases)} cases; sizes {sizes}")


if __name__ == "__main__":
    main()
