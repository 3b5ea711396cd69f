#!/usr/bin/env python3
"""bench/bench_train.py: end-to-end MQAR training, mambagrad against PyTorch, in one run.

    python3 bench/bench_train.py --config zoology          # GPU: d_model 128, 2 layers, L 256, 16 pairs
    python3 bench/bench_train.py --config zoology --arch transformer   # the GPT-NeoX baseline instead
    python3 bench/bench_train.py --config large --time-limit 60   # d_model 768, 24 layers, L 512
    /usr/bin/python3 bench/bench_train.py --config cpu --threads 2  # CPU: d_model 64, 2 layers, L 64
    python3 bench/bench_train.py --config large --precision fp32,tf32 --skip-torch   # each precision in turn
    python3 bench/bench_train.py --config tiny     # the paper's tiny Mamba on its MQAR grid (L 64-512)
    python3 bench/bench_train.py --config 130m     # the 130m preset (vocab 50280) at L 512

Both sides train the same model (Mamba blocks as in mamba_ssm: prenorm residual, RMSNorm, in_proj,
depthwise causal conv1d + SiLU, x_proj, dt_proj with softplus, the selective scan with D skip and
SiLU(z) gate, out_proj, final RMSNorm, head tied to the embedding) on the same data (generated
once by `mambagrad data` and read back here), with the same batch size, optimizer (AdamW, betas
(0.9, 0.95), eps 1e-6, weight decay 0.1), schedule (10% warmup, cosine) and clipping (by value,
1.0). Both compute the loss from logits at the labelled positions only. The PyTorch model is
written below with its own sequential selective scan (the unbind loop a user without fused
kernels writes); mamba_ssm is not installed on the benchmark machine, so its figure is the
issue's recorded anchor.

With --arch transformer both sides train the GPT-NeoX model of our zoology preset (2 heads, rotary
on every head dim, parallel residual, LayerNorm, GELU MLP of 4 d_model, untied output embedding,
N(0, 0.02) init) at the config's size; the PyTorch model below uses PyTorch's fused
scaled_dot_product_attention (causal), the fastest attention a PyTorch user gets.

Per side it reports: training tokens/s (median over logging windows after the first, evaluation
excluded), time to the target held-out accuracy (training time only, evaluation excluded; "not
reached" within --time-limit), and peak memory (CUDA: the allocator's high-water mark).

--precision fp32 (default) | tf32, or a comma list run in turn: ours with the config key
`precision`, PyTorch with torch.backends.cuda.matmul.allow_tf32 (matmuls on tensor cores in TF32,
everything else fp32 on both sides); each side is compared with the other at the same precision.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    # The configs. epochs sets the cosine schedule's length (both sides use the same);
    # the run stops at the target accuracy or the time limit, whichever comes first.
    # zoology: the reference sweep's 64 epochs (SPEC.md §5), so the cosine is still near its peak
    # when the model learns the task; with 16 epochs it decayed to 0 and held-out accuracy stalled
    # at 96% (H200, 2026-11-29).
    "zoology": dict(d_model=128, n_layer=2, vocab=8192, L=256, pairs=16, batch=64, lr=1e-3,
                    train_examples=100000, valid_examples=1000, epochs=64, eval_every=200, log_every=50),
    "large": dict(d_model=768, n_layer=24, vocab=8192, L=512, pairs=32, batch=16, lr=1e-3,
                  train_examples=20000, valid_examples=200, epochs=4, eval_every=500, log_every=5),
    # The reproduction's workload (SPEC.md §5, experiments/positional.json): the paper's tiny Mamba
    # (d_model 256, 8 layers, model vocab 20480) on Standard MQAR over the paper's 26-cell grid, L 64
    # to 512, vocab 20000; batches never mix lengths (both sides), so tokens per step vary by cell.
    # train_examples is per cell. 1 epoch: throughput, not accuracy.
    "tiny": dict(preset="tiny", d_model=256, n_layer=8, model_vocab=20480, vocab=20000, grid="paper", L=None,
                 pairs=None, batch=64, lr=1e-3, train_examples=400, valid_examples=20, epochs=1, eval_every=10**9,
                 log_every=20),
    # The 130m preset (d_model 768, 24 layers, model vocab 50280 padded to 50304) at L 512.
    "130m": dict(preset="130m", d_model=768, n_layer=24, model_vocab=50280, vocab=20000, L=512, pairs=32, batch=16,
                 lr=1e-3, train_examples=20000, valid_examples=200, epochs=4, eval_every=500, log_every=5),
    # cpu: a throughput comparison. In a few minutes neither side gets past the 25% plateau
    # before MQAR's phase transition, at lr 1e-3 or 1e-2 (2026-11-30, bench/RESULTS.md); `make
    # train` learns in seconds because its default task is smaller (vocab 32, L 16 and 32, 2 pairs).
    "cpu": dict(d_model=64, n_layer=2, vocab=256, L=64, pairs=4, batch=32, lr=1e-3,
                train_examples=20000, valid_examples=200, epochs=8, eval_every=100, log_every=10),
}


# ---- data ------------------------------------------------------------------------------------------
def grid_of(cfg):
    return cfg.get("grid") or f"{cfg['L']}x{cfg['pairs']}"


def generate(bin_path, out, split, cfg, examples):
    subprocess.run([bin_path, "data", "--out", out, "--split", split, "--grid", grid_of(cfg),
                    "--vocab_size", str(cfg["vocab"]), "--examples", str(examples)],
                   check=True, stdout=subprocess.DEVNULL)


def load(path, device):
    """{L: (inputs (n, L) int64, labels (n, L) int64 with -100 where no target: already shifted, as
    ours)}: one pair of tensors per sequence length, as batches never mix lengths."""
    by_len = {}
    with open(path) as f:
        for line in f:
            ex = json.loads(line)
            x = ex["input_ids"]
            lab = [-100] * len(x)
            for pos, tok in ex["V_id"].items():
                lab[int(pos) - 1] = tok  # the output at p-1 predicts the token at p
            ids, labels = by_len.setdefault(len(x), ([], []))
            ids.append(x)
            labels.append(lab)
    return {L: (torch.tensor(i, device=device), torch.tensor(l, device=device)) for L, (i, l) in by_len.items()}


def epoch_batches(data, B, g):
    """One epoch's batches as (L, example indices): each length's examples permuted and cut into
    batches of B (a final partial batch kept, as ours), then the batches permuted."""
    batches = []
    for L, (ids, _) in sorted(data.items(), reverse=True):
        order = torch.randperm(ids.shape[0], generator=g)
        batches += [(L, order[i:i + B]) for i in range(0, ids.shape[0], B)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


# ---- the PyTorch model -----------------------------------------------------------------------------
def selective_scan_sequential(u, dt, A, Bm, Cm, Dskip):
    """u, dt (B, L, D); A (D, N); Bm, Cm (B, L, N) -> y (B, L, D). One step per token."""
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for dt_t, u_t, B_t, C_t in zip(dt.unbind(1), u.unbind(1), Bm.unbind(1), Cm.unbind(1)):
        h = torch.exp(dt_t.unsqueeze(-1) * A) * h + (dt_t * u_t).unsqueeze(-1) * B_t.unsqueeze(1)
        ys.append((h * C_t.unsqueeze(1)).sum(-1))
    return torch.stack(ys, 1) + u * Dskip


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Mixer(nn.Module):
    def __init__(self, d_model, n_layer, d_state=16, d_conv=4, expand=2):
        super().__init__()
        d_inner, R = expand * d_model, math.ceil(d_model / 16)
        self.d_inner, self.R, self.N = d_inner, R, d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, R + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(R, d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        with torch.no_grad():  # mamba_ssm's init: dt in [1e-3, 1e-1] log-uniform, S4D-real A, D = 1
            dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.out_proj.weight /= math.sqrt(n_layer)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))

    def forward(self, u):
        L = u.shape[1]
        x, z = self.in_proj(u).chunk(2, -1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L]).transpose(1, 2)
        dt, Bm, Cm = self.x_proj(x).split([self.R, self.N, self.N], -1)
        dt = F.softplus(self.dt_proj(dt))
        y = selective_scan_sequential(x, dt, -torch.exp(self.A_log), Bm, Cm, self.D)
        return self.out_proj(y * F.silu(z))


class MambaLM(nn.Module):
    def __init__(self, vocab, d_model, n_layer):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.mixers = nn.ModuleList(Mixer(d_model, n_layer) for _ in range(n_layer))
        self.norms = nn.ModuleList(RMSNorm(d_model) for _ in range(n_layer))
        self.norm_f = RMSNorm(d_model)

    def hidden(self, ids):
        h, residual = self.embedding(ids), None
        for mixer, norm in zip(self.mixers, self.norms):
            residual = h if residual is None else h + residual
            h = mixer(norm(residual))
        return self.norm_f(h + residual)

    def labelled_logits(self, ids, labels):
        """Logits at the labelled positions only (as our indexed cross-entropy)."""
        h = self.hidden(ids)
        mask = labels != -100
        return h[mask] @ self.embedding.weight.t(), labels[mask]


class NeoXLayer(nn.Module):
    """GPT-NeoX with Pythia's settings: h + attn(LN1 h) + mlp(LN2 h); qkv read per head as (q, k, v)."""

    def __init__(self, d_model, n_head, rotary_dims):
        super().__init__()
        self.H, self.Dh, self.R = n_head, d_model // n_head, rotary_dims
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.dense = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.up, self.down = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)

    def rope(self, x):  # x (B, H, L, Dh): rotate pairs (i, i + R/2) of the first R dims
        L, h = x.shape[2], self.R // 2
        inv = 10000.0 ** (-torch.arange(0, h, device=x.device, dtype=torch.float32) * 2 / self.R)
        ang = torch.arange(L, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
        r, rest = x[..., :self.R], x[..., self.R:]
        half = torch.cat([-r[..., h:], r[..., :h]], -1)
        return torch.cat([r * cos + half * sin, rest], -1)

    def forward(self, h):
        B, L, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, L, self.H, 3 * self.Dh).permute(0, 2, 1, 3).split(self.Dh, -1)
        o = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True)
        a = self.dense(o.permute(0, 2, 1, 3).reshape(B, L, d))
        return h + a + self.down(F.gelu(self.up(self.ln2(h))))


class NeoXLM(nn.Module):
    def __init__(self, vocab, d_model, n_layer, n_head=2):
        super().__init__()
        self.embed_in = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(NeoXLayer(d_model, n_head, d_model // n_head) for _ in range(n_layer))
        self.final = nn.LayerNorm(d_model)
        self.embed_out = nn.Linear(d_model, vocab, bias=False)
        for m in self.modules():  # transformers' GPT-NeoX init
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def labelled_logits(self, ids, labels):
        h = self.embed_in(ids)
        for layer in self.layers:
            h = layer(h)
        mask = labels != -100
        return self.embed_out(self.final(h)[mask]), labels[mask]


def lr_at(step, total, lr):
    warm = max(1, int(0.1 * total))
    if step < warm:
        return lr * (step + 1) / warm
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_torch(cfg, train, valid, device, time_limit, target, arch="mamba"):
    torch.manual_seed(0)
    vocab = cfg.get("model_vocab") or 1 + int(max(max(t[0].max(), t[1].max()) for t in (*train.values(), *valid.values())))
    Model = NeoXLM if arch == "transformer" else MambaLM
    model = Model(vocab, cfg["d_model"], cfg["n_layer"]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.95), eps=1e-6, weight_decay=0.1)
    B = cfg["batch"]
    g = torch.Generator().manual_seed(0)
    per_epoch = len(epoch_batches(train, B, torch.Generator().manual_seed(0)))
    total = per_epoch * cfg["epochs"]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def evaluate():
        model.eval()
        right = count = 0
        with torch.no_grad():
            for ids, labels in valid.values():
                for i in range(0, ids.shape[0], B):
                    logits, lab = model.labelled_logits(ids[i:i + B], labels[i:i + B])
                    right += int((logits.argmax(-1) == lab).sum())
                    count += lab.numel()
        model.train()
        return right / count

    rates, train_s, step, reached, acc = [], 0.0, 0, None, 0.0
    window_t, window_tok = 0.0, 0
    while step < total and reached is None and train_s < time_limit:
        for L, idx in epoch_batches(train, B, g):
            idx = idx.to(device)
            sync()
            t0 = time.perf_counter()
            logits, lab = model.labelled_logits(train[L][0][idx], train[L][1][idx])
            loss = F.cross_entropy(logits, lab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg["lr"])
            opt.step()
            sync()
            dt = time.perf_counter() - t0
            step += 1
            train_s += dt
            window_t += dt
            window_tok += idx.numel() * L
            if step % cfg["log_every"] == 0:
                rates.append(window_tok / window_t)
                print(f"  torch step {step}: loss {loss.item():.4f}, {rates[-1] / 1e3:.1f} k tok/s", flush=True)
                window_t, window_tok = 0.0, 0
            if step % cfg["eval_every"] == 0:
                acc = evaluate()
                print(f"  torch step {step}: valid acc {100 * acc:.2f}% after {train_s:.1f} s", flush=True)
                if acc >= target:
                    reached = train_s
            if reached is not None or train_s >= time_limit or step >= total:
                break
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    if not rates and train_s > 0:  # fewer steps than one logging window: the whole run's rate
        rates = [window_tok / window_t]
    return dict(tokens_per_s=median(rates[1:] or rates), time_to_target=reached, steps=step, train_s=train_s,
                final_acc=acc, peak_bytes=peak)


# ---- ours ------------------------------------------------------------------------------------------
def train_ours(bin_path, cfg, device, time_limit, target, workdir, arch="mamba", precision="fp32"):
    run_dir = os.path.join(workdir, f"ours_{precision}")
    n_train = cfg["train_examples"]
    model = {"arch": arch, "preset": "zoology", "d_model": cfg["d_model"], "n_layer": cfg["n_layer"], "vocab_size": "auto"}
    if "preset" in cfg:  # the preset itself (its vocabulary included), as the reproduction trains it
        model = {"arch": arch, "preset": cfg["preset"]}
    conf = {
        "model": model,
        "task": {"grid": grid_of(cfg), "vocab_size": cfg["vocab"], "train_examples": n_train,
                 "valid_examples": cfg["valid_examples"], "test_examples": 1, "test_variants": []},
        "batch_size": cfg["batch"], "epochs": cfg["epochs"], "lr": cfg["lr"], "eps": 1e-6, "weight_decay": 0.1,
        "clip_value": 1.0, "eval_every": cfg["eval_every"], "log_every": cfg["log_every"],
        "target_accuracy": target, "device": device, "run_dir": run_dir, "seed": 0, "precision": precision,
        # the time limit as a step budget is not known in advance: stop by steps estimated later
    }
    path = os.path.join(workdir, f"ours_{precision}.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    proc = subprocess.Popen([bin_path, "train", "--config", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    metrics = os.path.join(run_dir, "metrics.jsonl")
    t_start = time.time()
    killed = False
    for line in proc.stdout:
        if line.startswith("valid @") or line.startswith("early stop") or line.startswith("error"):
            print("  ours " + line.rstrip(), flush=True)
        # stop at the time limit (training time, read from the newest metrics row)
        if os.path.exists(metrics) and time.time() - t_start > 5:
            rows = read_rows(metrics)
            if rows and rows[-1].get("train_s", 0) >= time_limit:
                proc.terminate()
                killed = True
                break
    proc.wait()
    if proc.returncode not in (0, None) and not killed:
        raise SystemExit(f"mambagrad train failed with exit code {proc.returncode}")
    rows = read_rows(metrics)
    train_rows = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    reached = next((r["train_s"] for r in evals if r["query_acc"] >= target), None)
    rates = [r["tokens_per_s"] for r in train_rows]
    return dict(tokens_per_s=median(rates[1:] or rates), time_to_target=reached,
                steps=train_rows[-1]["step"] if train_rows else 0,
                train_s=train_rows[-1]["train_s"] if train_rows else 0,
                final_acc=evals[-1]["query_acc"] if evals else 0.0,
                peak_bytes=max((r.get("peak_bytes", 0) for r in train_rows), default=None) or None)


def read_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a row being written
    return rows


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def fmt_time(t):
    return f"{t:.1f} s" if t is not None else "not reached"


def fmt_mem(b):
    return f"{b / 2**20:.0f} MiB" if b else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="zoology")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available, cpu for --config cpu)")
    ap.add_argument("--bin", default="build/mambagrad")
    ap.add_argument("--time-limit", type=float, default=120, help="training seconds per side")
    ap.add_argument("--torch-time-limit", type=float, default=None, help="default: --time-limit")
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--arch", choices=["mamba", "transformer"], default="mamba")
    ap.add_argument("--precision", default="fp32", help="fp32, tf32, or a comma list of them run in turn")
    args = ap.parse_args()
    cfg = CONFIGS[args.config]
    device = args.device or ("cpu" if args.config == "cpu" or not torch.cuda.is_available() else "cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    # idle OpenMP threads (both sides) spin briefly, then sleep: the Makefile's `make train` setting
    # (passive made our CPU step ~20% slower, waking threads by futex; the default spin hurt a busy machine)
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# bench_train --config {args.config} --arch {args.arch}: {cfg}\n# device {name}, torch {torch.__version__}", flush=True)

    precisions = args.precision.split(",")
    for p in precisions:
        if p not in ("fp32", "tf32"):
            ap.error(f"--precision: '{p}' is not fp32 or tf32")
    torch_name = "pytorch (fused SDPA)" if args.arch == "transformer" else "pytorch (sequential scan)"
    with tempfile.TemporaryDirectory(prefix="mg_bench_train_") as work:
        results, base_of = {}, {}
        data = None
        for p in precisions:
            ours_side, torch_side = f"mambagrad {p}", f"{torch_name} {p}"
            if not args.skip_ours:
                results[ours_side] = train_ours(args.bin, cfg, device, args.time_limit, args.target, work, args.arch, p)
                print(f"# ours {p}: {results[ours_side]}", flush=True)
            if not args.skip_torch:
                if data is None:
                    tr, va = os.path.join(work, "train.jsonl"), os.path.join(work, "valid.jsonl")
                    generate(args.bin, tr, "train", cfg, cfg["train_examples"])
                    generate(args.bin, va, "valid", cfg, cfg["valid_examples"])
                    data = load(tr, device), load(va, device)
                torch.backends.cuda.matmul.allow_tf32 = p == "tf32"
                results[torch_side] = train_torch(cfg, data[0], data[1], device, args.torch_time_limit or args.time_limit,
                                                  args.target, args.arch)
                print(f"# torch {p}: {results[torch_side]}", flush=True)
                base_of[ours_side] = base_of[torch_side] = results[torch_side]

    print(f"\n| side | tokens/s | vs PyTorch (same precision) | time to {100 * args.target:.0f}% | final acc | steps | peak memory |")
    print("|---|---|---|---|---|---|---|")
    for side, r in results.items():
        base = base_of.get(side)
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.1f}x" if base else "-"
        print(f"| {side} | {r['tokens_per_s'] / 1e3:.1f} k | {ratio} | {fmt_time(r['time_to_target'])} | "
              f"{100 * r['final_acc']:.2f}% | {r['steps']} | {fmt_mem(r['peak_bytes'])} |")


if __name__ == "__main__":
    main()
