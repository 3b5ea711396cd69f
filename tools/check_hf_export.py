#!/usr/bin/env python3
"""tools/check_hf_export.py: checks `mambagrad convert --to hf` against transformers, an
implementation we did not write.

    python3 tools/check_hf_export.py SOURCE [--prompt TEXT] [--max_new_tokens N] [--num_samples K]
                                            [--corpus FILE] [--split valid|test|train]
                                            [--mambagrad PATH] [--keep DIR]

SOURCE is a mambagrad checkpoint (a .safetensors of a Mamba run) or a model folder (a transformers
or mamba_ssm Mamba folder, which mambagrad reads directly). Needs torch, transformers (5.x) and
safetensors; runs on the CPU in float32. The script

  1. export    runs `mambagrad convert --to hf SOURCE --out DIR` and loads DIR with
               transformers.MambaForCausalLM.from_pretrained(DIR, dtype=float32): no missing,
               unexpected or mis-shaped tensor may be reported;
  2. weights   compares every tensor of the loaded model with mambagrad's own (the checkpoint's, or
               for a folder `mambagrad convert --from hf`'s), bit for bit, under nn/hf_names.h's
               renaming; for a folder SOURCE also with the original folder loaded by transformers
               (the round trip);
  3. batch     runs `mambagrad probe --checkpoint CKPT --task.kind mqar --dtype f64 --out F` (CKPT:
               the checkpoint, or for a folder SOURCE its `convert --from hf` copy; one
               batch of MQAR ids through the model: inputs, labelled positions, targets, the mean
               cross-entropy and every parameter's gradient) and recomputes that loss and those
               gradients with the transformers model (float32): the loss to a relative 1e-5, each
               gradient to a relative 1e-4 (|ours - theirs|_max / |theirs|_max). This is the logits
               comparison: mambagrad has no logits dump, and the loss and gradients of a batch are
               a function of the logits at the labelled positions and every weight's use;
  4. generate  compares `mambagrad generate --checkpoint SOURCE --prompt P --temperature 0
               --max_new_tokens N --device cpu` with transformers' greedy search (generate,
               do_sample False) on the same prompt, as bytes. The prompt is fed as mambagrad feeds
               it (data/tokenizer.h): the byte tokenizer's ids are the bytes with BOS (256) first;
               a BPE tokenizer.json is loaded with PreTrainedTokenizerFast(tokenizer_file=...) and
               the prompt fed as it encodes it (<|endoftext|> alone for an empty prompt). Greedy
               search is given mambagrad's candidate set (suppress_tokens: BOS and the padding
               rows of a byte model, the rows beyond a BPE tokenizer's ids) and its end token as
               eos_token_id. The smallest gap between the two largest logits over the steps is
               printed: below ~1e-5 a disagreement can be float32 rounding rather than a bug.
               With --num_samples K (builds that have generate --num_samples) the batched path
               too: each of the K greedy samples must be the same text;
  5. eval      (with --corpus) compares `mambagrad eval --checkpoint SOURCE --corpus FILE --split S`
               with the same loss computed by transformers: the corpus stream (begin, encode(text),
               end), split as data/text.cpp's split_text, the stride-seq_len windows of
               evaluate_lm, the mean cross-entropy over every target, to the 4 decimals mambagrad
               prints; and the count of targets and of the bytes they stand for (bits per byte's
               denominator: a special token counts 1). seq_len and the split fractions are
               SOURCE's (a folder: the defaults its config gets, seq_len 256), so the split needs
               more than seq_len + 1 tokens.

It also reports (as a failure) an exported config.json / generation_config.json whose
bos_token_id / eos_token_id is not the start / end token of the model's tokenizer: transformers'
generate would start and stop at other tokens than mambagrad's generate does. (The comparisons
above pass mambagrad's ids to transformers explicitly, so they do not depend on those files.)

Exit status 0 when every check passes, 1 when one fails, 2 when a command or load could not run.
Examples:

    /tmp/hfenv/bin/python tools/check_hf_export.py tests/fixtures/hf_mamba_folder \
        --prompt "And God said" --corpus data/corpus/kjv.txt
    /tmp/hfenv/bin/python tools/check_hf_export.py runs/lm/final.safetensors --prompt "The " \
        --max_new_tokens 32 --corpus my.txt
"""
import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# data/text.h's byte tokenizer
BYTE_BOS, BYTE_EOS, BYTE_VOCAB = 256, 257, 258
# nn/hf_names.h: the only name that differs
OUR_EMBEDDING, THEIR_EMBEDDING = "backbone.embedding.", "backbone.embeddings."
# train/config.h's TaskConfig defaults: what a folder's train config gets (train/pretrained.h)
DEFAULT_SEQ_LEN, DEFAULT_VALID, DEFAULT_TEST = 256, 0.05, 0.05

LOSS_RTOL, GRAD_RTOL, EVAL_ATOL = 1e-5, 1e-4, 1.5e-4


class Failed(Exception):
    """A command or a load that could not run (exit 2)."""


def run(cmd, what):
    print(f"$ {shlex.join(cmd)}", flush=True)
    p = subprocess.run(cmd, capture_output=True)
    if p.returncode != 0:
        raise Failed(f"{what}: exit {p.returncode}\n{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")
    return p.stdout


def bytes_to_unicode():
    """GPT-2's byte <-> printable character table (the ByteLevel pre-tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


class Tok:
    """mambagrad's view of a tokenizer (data/tokenizer.h), built from transformers' / tokenizers'."""

    def __init__(self, tokenizer_json, model_vocab):
        self.model_vocab = model_vocab
        if tokenizer_json is None:
            self.kind = "bytes"
            self.vocab = BYTE_VOCAB
            self.begin, self.end, self.begin_always = BYTE_BOS, BYTE_EOS, True
            self.suppress = [BYTE_BOS] + list(range(BYTE_VOCAB, model_vocab))
            return
        from transformers import PreTrainedTokenizerFast
        self.kind = "bpe"
        self.hf = PreTrainedTokenizerFast(tokenizer_file=tokenizer_json)
        with open(tokenizer_json, encoding="utf-8") as f:
            spec = json.load(f)
        self.added = {t["id"]: t["content"].encode("utf-8") for t in spec.get("added_tokens", [])}
        self.special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
        ids = list(spec["model"]["vocab"].values()) + list(self.added)
        self.vocab = max(ids) + 1  # data/tokenizer.h: the file's largest id + 1
        eot = self.hf.convert_tokens_to_ids("<|endoftext|>")
        self.begin = self.end = eot if isinstance(eot, int) and eot != self.hf.unk_token_id else None
        self.begin_always = False
        self.suppress = list(range(self.vocab, model_vocab))
        self.byte_of = {c: b for b, c in bytes_to_unicode().items()}

    def encode(self, text):
        if self.kind == "bytes":
            return list(text.encode("utf-8"))
        return self.hf.backend_tokenizer.encode(text).ids  # tokenizers' Tokenizer.encode(text).ids

    def prompt_ids(self, text):
        ids = self.encode(text)
        if self.begin is not None and (self.begin_always or not ids):
            ids = [self.begin] + ids
        if not ids:
            raise Failed("generate: an empty prompt needs a start token and the tokenizer has none")
        return ids

    def token_bytes(self, i):
        if self.kind == "bytes":
            return bytes([i]) if i < 256 else b""
        if i in self.added:
            return self.added[i]
        token = self.hf.convert_ids_to_tokens(i)
        try:
            return bytes(self.byte_of[ch] for ch in token)
        except KeyError:
            raise Failed(f"token {i} = {token!r} is not written in the byte-level alphabet: a tokenizer.json that is "
                         "not byte-level BPE (mambagrad reads byte-level BPE only, data/bpe.h)") from None

    def target_bytes(self, i):
        """The bytes a target stands for in bits per byte (data/tokenizer.h): a special token is 1."""
        if self.kind == "bytes":
            return 1
        return 1 if i in self.special else max(1, len(self.token_bytes(i)))

    def stream(self, text):
        out = [self.begin] if self.begin is not None else []
        out += self.encode(text)
        if self.end is not None:
            out.append(self.end)
        return out


def read_safetensors_metadata(path):
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        return f.metadata() or {}


def our_tensors(path):
    from safetensors.torch import load_file
    return load_file(path)


class Checker:
    def __init__(self):
        self.results = []

    def check(self, name, ok, detail):
        self.results.append((name, ok, detail))
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)

    def summary(self):
        bad = [r for r in self.results if not r[1]]
        print(f"\n{len(self.results) - len(bad)} passed, {len(bad)} failed" + "".join(f"\n  FAIL {n}: {d}" for n, _, d in bad))
        return 1 if bad else 0


def check_export(args, c, mg, work):
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # the slow-path notices of the torch Mamba
    transformers.logging.disable_progress_bar()
    source = args.source
    is_folder = os.path.isdir(source)
    ckpt = source
    if is_folder:  # mambagrad's own copy of the weights (and probe, which takes a file)
        ckpt = os.path.join(work, "source.safetensors")
        run([mg, "convert", "--from", "hf", source, "--out", ckpt], "convert --from hf")
    out = os.path.join(work, "hf")
    run([mg, "convert", "--to", "hf", source, "--out", out], "convert --to hf")
    print("exported:", ", ".join(sorted(os.listdir(out))))

    # 1. the folder loads, with nothing missing, unexpected or mis-shaped
    model, info = transformers.MambaForCausalLM.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    c.check("load", not problems, f"MambaForCausalLM.from_pretrained: {problems or 'every tensor found'}; "
            f"{sum(p.numel() for p in model.parameters()):,} parameters, vocab {model.config.vocab_size}")
    V = model.config.vocab_size

    # 2. the weights, bit for bit
    ours = our_tensors(ckpt)
    theirs = model.state_dict()
    diffs, missing = [], []
    for name, t in theirs.items():
        if name == "lm_head.weight":  # tied to the embedding
            t_ok = model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr()
            if not t_ok:
                diffs.append("lm_head.weight is not tied")
            continue
        src = name.replace(THEIR_EMBEDDING, OUR_EMBEDDING, 1) if name.startswith(THEIR_EMBEDDING) else name
        if src not in ours:
            missing.append(src)
            continue
        o = ours[src].to(torch.float32)
        if o.shape != t.shape:
            diffs.append(f"{name}: ours {tuple(o.shape)}, theirs {tuple(t.shape)}")
        elif not torch.equal(o, t):
            diffs.append(f"{name}: max |ours - theirs| {float((o - t).abs().max()):.3g}")
    c.check("weights", not diffs and not missing, f"{len(theirs) - 1} tensors equal to {os.path.basename(ckpt)}'s, "
            "lm_head.weight tied to the embedding"
            if not diffs and not missing else f"differ: {diffs[:5]}, not in ours: {missing[:5]}")
    if is_folder:
        orig = transformers.MambaForCausalLM.from_pretrained(source, dtype=torch.float32).state_dict()
        bad = [n for n in orig if n not in theirs or not torch.equal(orig[n], theirs[n])] + [n for n in theirs if n not in orig]
        c.check("round trip", not bad, f"the export equals the original folder loaded by transformers ({len(orig)} "
                "tensors)" if not bad else f"tensors differ: {bad[:5]}")

    # the tokenizer mambagrad uses for this model
    tj = os.path.join(out, "tokenizer.json")
    tok = Tok(tj if os.path.exists(tj) else None, V)
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(out, "generation_config.json")) as f:
        gen_cfg = json.load(f)
    want = {"bos_token_id": tok.begin, "eos_token_id": tok.end}
    wrong = [f"{file} {k} = {d.get(k)} (the tokenizer's is {v})" for file, d in
             (("config.json", cfg), ("generation_config.json", gen_cfg)) for k, v in want.items() if d.get(k) != v]
    c.check("token ids", not wrong, f"bos/eos_token_id are the {tok.kind} tokenizer's start/end ({tok.begin}, {tok.end})"
            if not wrong else "; ".join(wrong))

    # 3. one batch: loss and gradients against mambagrad's probe (f64)
    probe = os.path.join(work, "probe.safetensors")
    run([mg, "probe", "--checkpoint", ckpt, "--task.kind", "mqar", "--dtype", "f64", "--device", "cpu",
         "--out", probe], "probe")
    p = our_tensors(probe)
    inputs, positions, targets = p["batch.inputs"].long(), p["batch.positions"].long(), p["batch.targets"].long()
    model.zero_grad()
    hidden = model.backbone(input_ids=inputs).last_hidden_state
    logits = model.lm_head(hidden).reshape(-1, V)[positions].float()
    loss = torch.nn.functional.cross_entropy(logits, targets)
    loss.backward()
    ours_loss = float(p["loss"])
    rel = abs(loss.item() - ours_loss) / abs(ours_loss)
    c.check("batch loss", rel <= LOSS_RTOL, f"{tuple(inputs.shape)} ids, {len(positions)} labelled: transformers "
            f"{loss.item():.8f}, mambagrad {ours_loss:.8f} (relative {rel:.1e})")
    worst, errs = (0.0, ""), []
    for name, param in model.named_parameters():
        ours_g = p.get("grad." + name.replace(THEIR_EMBEDDING, OUR_EMBEDDING, 1))
        if ours_g is None:
            errs.append(f"no grad.{name} in the probe")
            continue
        g = param.grad.double()
        r = float((ours_g - g).abs().max() / max(float(g.abs().max()), 1e-30))
        if r > worst[0]:
            worst = (r, name)
        if r > GRAD_RTOL:
            errs.append(f"{name} {r:.1e}")
    c.check("batch gradients", not errs, f"{len(list(model.parameters()))} parameters, worst relative "
            f"{worst[0]:.1e} ({worst[1]})" if not errs else f"relative error over {GRAD_RTOL}: {errs[:6]}")

    # 4. greedy generation
    ids = tok.prompt_ids(args.prompt)
    with torch.no_grad():
        g = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                           max_new_tokens=args.max_new_tokens, do_sample=False, num_beams=1,
                           eos_token_id=tok.end, pad_token_id=tok.end if tok.end is not None else 0,
                           suppress_tokens=tok.suppress or None, output_scores=True, return_dict_in_generate=True)
    new = g.sequences[0, len(ids):].tolist()
    if tok.end is not None and tok.end in new:
        new = new[:new.index(tok.end)]
    gaps = [float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in g.scores]
    theirs_text = b"".join(tok.token_bytes(i) for i in new)
    out_ours = run([mg, "generate", "--checkpoint", source, "--prompt", args.prompt, "--temperature", "0",
                    "--max_new_tokens", str(args.max_new_tokens), "--device", "cpu"], "generate")
    prompt_b = args.prompt.encode("utf-8")
    ok_shape = out_ours.startswith(prompt_b) and out_ours.endswith(b"\n")
    ours_text = out_ours[len(prompt_b):-1] if ok_shape else out_ours
    same = ok_shape and ours_text == theirs_text
    where = next((i for i in range(min(len(ours_text), len(theirs_text))) if ours_text[i] != theirs_text[i]),
                 min(len(ours_text), len(theirs_text)))
    c.check("greedy generation", same,
            f"{len(new)} tokens ({len(theirs_text)} bytes) identical; min top-2 logit gap {min(gaps):.2e}: {theirs_text!r}"
            if same else f"first difference at byte {where} (min top-2 gap {min(gaps):.2e})\n"
            f"    transformers: {theirs_text!r}\n    mambagrad:    {ours_text!r}")

    # 4b. the same greedy text from a batch of samples (generate --num_samples, where the build has it)
    if args.num_samples > 1:
        out_b = run([mg, "generate", "--checkpoint", source, "--prompt", args.prompt, "--temperature", "0",
                     "--max_new_tokens", str(args.max_new_tokens), "--device", "cpu", "--num_samples",
                     str(args.num_samples)], "generate --num_samples")
        # "--- sample b (seed s) ---\n" PROMPT TEXT "\n", one after another
        parts = re.split(rb"(?:^|\n)--- sample \d+ \(seed \d+\) ---\n", out_b)[1:]
        want = prompt_b + theirs_text
        bad = [b for b, t in enumerate(parts) if t.rstrip(b"\n") != want.rstrip(b"\n")]
        c.check("greedy generation, batched", len(parts) == args.num_samples and not bad,
                f"{args.num_samples} samples, each transformers' text" if len(parts) == args.num_samples and not bad
                else f"{len(parts)} samples read; samples {bad} differ: {parts[bad[0]] if bad else out_b!r}")

    # 5. the loss of a corpus split
    if args.corpus:
        meta = read_safetensors_metadata(ckpt)
        task = json.loads(meta["mambagrad.config"])["task"] if "mambagrad.config" in meta else {}
        L = int(task.get("seq_len", DEFAULT_SEQ_LEN))
        vf, tf = float(task.get("valid_fraction", DEFAULT_VALID)), float(task.get("test_fraction", DEFAULT_TEST))
        with open(args.corpus, "rb") as f:
            text = f.read()
        try:
            stream = tok.stream(text.decode("utf-8")) if tok.kind == "bpe" else [BYTE_BOS] + list(text) + [BYTE_EOS]
        except UnicodeDecodeError as e:
            raise Failed(f"{args.corpus}: not UTF-8 ({e}); the BPE comparison reads the corpus as text") from None
        n = len(stream)
        n_test, n_valid = math.floor(n * tf), math.floor(n * vf)
        n_train = n - n_valid - n_test
        split = {"train": stream[:n_train], "valid": stream[n_train:n_train + n_valid],
                 "test": stream[n_train + n_valid:]}[args.split]
        windows = (len(split) - 1) // L if split else 0
        if windows == 0:
            raise Failed(f"eval: the {args.split} split of {args.corpus} has {len(split)} tokens, no window of "
                         f"seq_len + 1 = {L + 1}; give a larger corpus")
        total, count = 0.0, 0
        n_bytes = sum(tok.target_bytes(i) for i in split[1:windows * L + 1])
        with torch.no_grad():
            for w0 in range(0, windows, 8):
                batch = torch.tensor([split[w * L:w * L + L + 1] for w in range(w0, min(windows, w0 + 8))])
                lg = model(input_ids=batch[:, :-1]).logits.double()
                total += float(torch.nn.functional.cross_entropy(lg.reshape(-1, V), batch[:, 1:].reshape(-1),
                                                                 reduction="sum"))
                count += batch[:, 1:].numel()
        theirs_loss = total / count
        out_eval = run([mg, "eval", "--checkpoint", source, "--corpus", args.corpus, "--split", args.split,
                        "--device", "cpu"], "eval").decode()
        # "loss X nats/byte, ... (N bytes)" or, with a BPE tokenizer, "loss X nats/token, ... (N tokens, M bytes)"
        m = re.search(r"loss ([0-9.]+) nats/(?:byte|token).*?\((\d+) (?:bytes|tokens)(?:, (\d+) bytes)?\)", out_eval)
        if not m:
            raise Failed(f"eval: cannot read the loss in {out_eval!r}")
        ours_loss, ours_n = float(m.group(1)), int(m.group(2))
        ours_bytes = int(m.group(3)) if m.group(3) else ours_n
        ok = abs(ours_loss - theirs_loss) <= EVAL_ATOL and ours_n == count and ours_bytes == n_bytes
        c.check("corpus loss", ok, f"{args.split} split of {args.corpus}, {windows} windows of {L}: {count} targets "
                f"(mambagrad {ours_n}) standing for {n_bytes} bytes (mambagrad {ours_bytes}); transformers "
                f"{theirs_loss:.6f}, mambagrad {ours_loss:.4f} nats/{'byte' if tok.kind == 'bytes' else 'token'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a mambagrad checkpoint (.safetensors) or a model folder")
    ap.add_argument("--prompt", default="The ", help="the text greedy generation continues (default 'The ')")
    ap.add_argument("--max_new_tokens", type=int, default=32, help="tokens to generate (default 32)")
    ap.add_argument("--num_samples", type=int, default=1,
                    help="also check `generate --num_samples K` (a batch; every greedy sample must be transformers' "
                         "text); default 1: off")
    ap.add_argument("--corpus", help="a text file whose split's loss is compared (optional)")
    ap.add_argument("--split", default="valid", choices=["train", "valid", "test"], help="its split (default valid)")
    default_mg = os.path.join(ROOT, "build", "mambagrad")
    if not os.path.exists(default_mg) and os.path.exists(os.path.join(ROOT, "build", "cpu", "mambagrad")):
        default_mg = os.path.join(ROOT, "build", "cpu", "mambagrad")  # a CPU-only build (README)
    ap.add_argument("--mambagrad", default=os.environ.get("MAMBAGRAD", default_mg),
                    help="the program (default $MAMBAGRAD, else build/mambagrad or build/cpu/mambagrad)")
    ap.add_argument("--keep", help="write the exported folder and probe file here (a new folder) and keep them")
    args = ap.parse_args()

    c = Checker()
    try:
        if args.keep:
            os.makedirs(args.keep)
            check_export(args, c, args.mambagrad, args.keep)
        else:
            with tempfile.TemporaryDirectory(prefix="check_hf_export.") as work:
                check_export(args, c, args.mambagrad, work)
    except Failed as e:
        print(f"error: {e}", file=sys.stderr)
        if c.results:
            c.summary()
        return 2
    return c.summary()


if __name__ == "__main__":
    sys.exit(main())
