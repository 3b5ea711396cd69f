#!/usr/bin/env python3
"""bench/bench_attention.py: mambagrad's fused causal attention beside PyTorch's, in one run.

    python3 bench/bench_attention.py            # GPU: B=8 H=12 Dh=64, L in 512,2048,8192, fp32

Measures the machine's fp32 ceiling first (an 8192^3 SGEMM with TF32 off), then runs
build/bench_ops --ops attention (our op through the public API: allocator, checks and autograd
included) and, on the same shapes, PyTorch's scaled_dot_product_attention restricted to its
memory-efficient kernel (its fused fp32 path) and a naive matmul-softmax-matmul. Prints median
times, the achieved FLOP rate (flash attention's count: causal forward 2 L^2 Dh per head, backward
2.5x the forward) as a share of the SGEMM ceiling, the speed-up over each baseline, and the peak
memory each needs above its inputs. The naive baseline's L x L matrices may not fit: "OOM".
"""
import argparse
import json
import math
import os
import subprocess
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(__file__))
from bench_ops import timer  # noqa: E402  (the one timer of the benchmarks)


def sgemm_tflops():
    torch.backends.cuda.matmul.allow_tf32 = False
    n = 8192
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
    ms = timer("cuda", lambda: a @ b, 10)[0]
    return 2 * n ** 3 / (ms * 1e-3) / 1e12


def naive(q, k, v):
    L, Dh = q.shape[-2], q.shape[-1]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v


def sdpa(q, k, v):
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def bench_torch(fn, B, H, Dh, L, reps):
    """(fwd ms, fwd+bwd ms, peak bytes above the inputs during fwd+bwd), or None on OOM."""
    torch.manual_seed(0)
    q, k, v, dout = (torch.randn(B, H, L, Dh, device="cuda") for _ in range(4))
    try:
        with torch.no_grad():
            fwd = timer("cuda", lambda: fn(q, k, v), reps)[0]
        for t in (q, k, v):
            t.requires_grad_(True)

        def fb():
            fn(q, k, v).backward(dout)
            for t in (q, k, v):
                t.grad = None

        fwdbwd = timer("cuda", fb, reps)[0]
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fb()
        torch.cuda.synchronize()
        return fwd, fwdbwd, torch.cuda.max_memory_allocated() - base
    except torch.OutOfMemoryError:
        return None
    finally:
        del q, k, v, dout
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--H", type=int, default=12)
    ap.add_argument("--Dh", type=int, default=64)
    ap.add_argument("--L", default="512,2048,8192")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "bench_ops"))
    ap.add_argument("--json", default="", help="also write the rows here")
    a = ap.parse_args()
    peak = sgemm_tflops()
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; fp32 SGEMM {peak:.1f} TFLOP/s")
    cmd = [a.bin, "--device", "cuda", "--ops", "attention", "--B", str(a.B), "--H", str(a.H), "--Dh", str(a.Dh),
           "--L", a.L, "--reps", str(a.reps)]
    rows = [json.loads(l) for l in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
            if l.startswith("{")]
    print(f"{'L':>6} {'side':<22} {'fwd ms':>9} {'f+b ms':>9} {'TFLOP/s f':>10} {'TFLOP/s fb':>11} {'%SGEMM fb':>9} "
          f"{'ours x':>7} {'peak MiB':>9}")
    for r in rows:
        L = int(r["shape"].split("L=")[1])
        sides = [("mambagrad", (r["fwd_ms"], r["fwdbwd_ms"], r.get("peak_extra_bytes", float("nan"))))]
        for name, fn in (("torch SDPA mem-eff", sdpa), ("torch naive", naive)):
            sides.append((name, bench_torch(fn, a.B, a.H, a.Dh, L, a.reps)))
        r["sgemm_tflops"] = peak
        r["device_name"] = torch.cuda.get_device_name(0)
        for name, res in sides:
            if res is None:
                print(f"{L:>6} {name:<22} {'OOM':>9}")
                r[name] = "OOM"
                continue
            f, fb, mem = res
            tf, tfb = r["flops_fwd"] / (f * 1e-3) / 1e12, r["flops_fwdbwd"] / (fb * 1e-3) / 1e12
            ratio = "" if name == "mambagrad" else f"{fb / r['fwdbwd_ms']:.2f}"
            print(f"{L:>6} {name:<22} {f:9.3f} {fb:9.3f} {tf:10.1f} {tfb:11.1f} {100 * tfb / peak:8.1f}% {ratio:>7} "
                  f"{mem / 2**20:9.1f}")
            r[name] = {"fwd_ms": f, "fwdbwd_ms": fb, "peak_extra_bytes": mem}
        sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
