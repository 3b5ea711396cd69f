#!/usr/bin/env python3
"""tools/torch_train.py: train tools/torch_reference.py's independent PyTorch Mamba (with or
without global selection) on an MQAR dataset with mambagrad's recipe, to see whether a behaviour
of our trainer (global selection's divergence at the tiny size: docs/global_selection.md) is the
method's or our engine's.

    build/mambagrad data --out train.jsonl --variant k4v8-shuffle --grid '[[256,8],[512,16]]' \\
        --vocab_size 8192 --examples 10000
    build/mambagrad probe --model.preset tiny ... --model.global_selection '{"enabled": true}' \\
        --out init.safetensors                       # our initial weights and the config
    python3 tools/torch_train.py init.safetensors train.jsonl --steps 1500 --total_steps 12520 \\
        --batch 32 --lr 1e-3 --device cuda --log log.jsonl

The recipe is the trainer's defaults (train/trainer.h): AdamW betas (0.9, 0.95), eps 1e-6,
weight decay 0.1 on every parameter, 10% linear warmup then cosine to 0 over --total_steps,
gradient clipping by value 1.0; batches of one length, drawn at random. The loss is the mean
cross-entropy over the labelled positions (the output at p-1 predicts the token at p of V_id).
Every --log_every steps it prints and logs the loss, the gradient norm before clipping, the
largest per-parameter norm and the largest gate value. Computes in float32 with the parallel
scan (tools/torch_reference.py selective_scan_parallel), each layer recomputed in backward.
"""
import argparse
import json
import math
import random
import sys

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from torch_reference import Reference, read_safetensors, rmsnorm, selective_scan_parallel  # noqa: E402


def load_jsonl(path):
    by_len = {}
    for line in open(path):
        ex = json.loads(line)
        ids = ex["input_ids"]
        pos = sorted((int(p), t) for p, t in ex["V_id"].items())
        by_len.setdefault(len(ids), []).append((ids, pos))
    return by_len


def batch(examples, device):
    L = len(examples[0][0])
    inputs = torch.tensor([e[0] for e in examples], device=device)
    positions, targets = [], []
    for b, (_, pos) in enumerate(examples):
        for p, t in pos:
            positions.append(b * L + p - 1)
            targets.append(t)
    return inputs, torch.tensor(positions, device=device), torch.tensor(targets, device=device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("init", help="a `mambagrad probe --out` file: the initial weights and the config")
    ap.add_argument("data", help="an MQAR JSONL of `mambagrad data`")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--total_steps", type=int, default=0, help="the schedule's length (default --steps)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip_value", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--log_every", type=int, default=50)
    ap.add_argument("--log", default="")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    total = args.total_steps or args.steps
    t, meta = read_safetensors(args.init)
    cfg = json.loads(meta["mambagrad.config"])
    dev = torch.device(args.device)
    params = {k[len("param."):]: v.to(dev, torch.float32).requires_grad_(True) for k, v in t.items()
              if k.startswith("param.")}
    model = Reference(cfg, params, scan=selective_scan_parallel)
    data = load_jsonl(args.data)
    lengths = sorted(data)
    weights = [len(data[L]) for L in lengths]
    opt = torch.optim.AdamW(list(params.values()), lr=args.lr, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.1)
    warm = int(0.1 * total)
    sched = lambda s: (s + 1) / max(1, warm) if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))
    log = open(args.log, "w") if args.log else None

    def layer(i, h, residual):
        residual = h if residual is None else h + residual
        return model.mixer(i, rmsnorm(residual, params["backbone.layers.{}.norm.weight".format(i)], model.eps)), residual

    for step in range(args.steps):
        L = rng.choices(lengths, weights)[0]
        inputs, positions, targets = batch(rng.sample(data[L], args.batch), dev)
        for g in opt.param_groups:
            g["lr"] = args.lr * sched(step)
        opt.zero_grad(set_to_none=True)
        model.trace = []
        E = params["backbone.embedding.weight"]
        h, residual = E[inputs.long()], None
        for i in range(model.n_layer):
            if residual is None:
                h, residual = layer(i, h, None)
            else:
                h, residual = torch.utils.checkpoint.checkpoint(layer, i, h, residual, use_reentrant=False)
        hidden = rmsnorm(h + residual, params["backbone.norm_f.weight"], model.eps)
        loss = F.cross_entropy(hidden.reshape(-1, hidden.shape[-1])[positions] @ E.T, targets)
        loss.backward()
        norms = {n: p.grad.norm().item() for n, p in params.items()}
        gnorm = math.sqrt(sum(v * v for v in norms.values()))
        if args.clip_value > 0:
            for p in params.values():
                p.grad.clamp_(-args.clip_value, args.clip_value)
        opt.step()
        if (step + 1) % args.log_every == 0 or step == 0:
            top = max(norms, key=norms.get)
            gate_max = max((g.max().item() for g in model.trace), default=float("nan"))
            row = {"step": step + 1, "loss": loss.item(), "grad_norm": gnorm, "top": top, "top_norm": norms[top],
                   "gate_max": gate_max, "lr": args.lr * sched(step)}
            print(json.dumps(row), flush=True)
            if log:
                log.write(json.dumps(row) + "\n")
                log.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
