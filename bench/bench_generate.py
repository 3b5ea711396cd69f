#!/usr/bin/env python3
"""bench/bench_generate.py: recurrent generation of a 130M-sized Mamba, mambagrad beside
transformers' MambaForCausalLM.generate (its cached path: one token a step through the recurrent
state; with mamba_ssm's and causal-conv1d's step kernels when they are installed), in one run.

    python3 bench/bench_generate.py --device cuda --bin dist/mambagrad          # GPU machine
    OMP_NUM_THREADS=2 python bench/bench_generate.py --device cpu --threads 2 \\
        --new-tokens 32 --batches 1                                           # 2 CPU cores

The model: transformers' MambaForCausalLM with mamba-130m's shape (hidden 768, 24 layers, state
16, expand 2, conv 4, time_step_rank 48, vocab 50280; 129 M parameters), random weights (the
speed does not depend on them), float32, saved with save_pretrained into a temporary folder that
mambagrad reads as it is (train/pretrained.h), with a tokenizer.json: tests/fixtures'
BPE (801 ids; mambagrad's greedy pick runs on the host over the tokenizer's ids, so with
GPT-NeoX's 50,277 ids each step's argmax would cost some tens of microseconds more per sequence;
the logits of all 50,280 columns are copied to the host either way).
Both sides generate greedily after a one-token prompt, max_new_tokens new tokens for every
sequence of a batch (transformers with min_new_tokens = max_new_tokens; mambagrad stops a sequence
at <|endoftext|>, and counts only what it made), timed end to end (prompt included) after one
warm-up generation, best of --reps. Prints new tokens per second per side and the ratio.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder(path):
    cfg = transformers.MambaConfig(vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=24, expand=2,
                                   conv_kernel=4, time_step_rank=48, use_bias=False, use_conv_bias=True,
                                   residual_in_fp32=True, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = transformers.MambaForCausalLM(cfg).float().eval()
    model.save_pretrained(path)
    shutil.copyfile(os.path.join(ROOT, "tests/fixtures/bpe_tokenizer.json"), os.path.join(path, "tokenizer.json"))
    return model


def kernels_available():
    out = {}
    for mod in ("mamba_ssm", "causal_conv1d"):
        try:
            __import__(mod)
            out[mod] = True
        except Exception:
            out[mod] = False
    return out


def time_transformers(model, device, batch, new_tokens, reps):
    ids = torch.full((batch, 1), 5, dtype=torch.long, device=device)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, **kw)  # warm-up
        best = float("inf")
        for _ in range(reps):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(ids, **kw)
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    made = (out.shape[1] - 1) * batch
    return made / best, best


def time_ours(binary, folder, device, batch, new_tokens, reps):
    best_rate, best_s = 0.0, None
    cmd = [binary, "generate", "--checkpoint", folder, "--prompt", "A", "--temperature", "0", "--max_new_tokens",
           str(new_tokens), "--num_samples", str(batch), "--stats", "--device", device]
    for i in range(reps + 1):  # the first is the warm-up
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        if r.returncode != 0:
            sys.exit(f"mambagrad failed: {r.stderr.strip()}")
        m = re.search(r"generate: (\d+) new tokens .* in ([0-9.]+) s", r.stderr)
        made, secs = int(m.group(1)), float(m.group(2))
        if i > 0 and made / secs > best_rate:
            best_rate, best_s = made / secs, secs
    return best_rate, best_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/mambagrad"))
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tmp = tempfile.mkdtemp(prefix="mg_gen130m_")
    try:
        model = make_folder(tmp).to(a.device)
        k = kernels_available()
        name = torch.cuda.get_device_name(0) if a.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        print(f"device: {name}; torch {torch.__version__}; transformers {transformers.__version__}; step kernels: "
              f"{', '.join(m for m, ok in k.items() if ok) or 'none (torch path)'}")
        print(f"{'batch':>6} {'side':<14} {'new tok/s':>11} {'seconds':>9} {'ours x':>8}")
        rows = []
        for b in [int(x) for x in a.batches.split(",")]:
            ours, ours_s = time_ours(a.bin, tmp, a.device, b, a.new_tokens, a.reps)
            theirs, theirs_s = time_transformers(model, a.device, b, a.new_tokens, a.reps)
            print(f"{b:>6} {'mambagrad':<14} {ours:>11.1f} {ours_s:>9.3f}")
            print(f"{b:>6} {'transformers':<14} {theirs:>11.1f} {theirs_s:>9.3f} {ours / theirs:>8.2f}")
            rows.append({"batch": b, "new_tokens": a.new_tokens, "ours_tok_s": ours, "transformers_tok_s": theirs,
                         "ratio": ours / theirs, "device": name, "kernels": k})
        if a.json:
            with open(a.json, "w") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
