#!/usr/bin/env python3
"""bench/bench_ops.py: mambagrad's kernels and PyTorch's, side by side in one run.

    python3 bench/bench_ops.py                 # GPU: B=8 D=1536 N=16, L in 512,2048,8192
    python3 bench/bench_ops.py --device cpu --B 4 --D 256 --L 1024 --threads 2

Measures the machine's copy bandwidth first (a large device-to-device copy, bytes read plus
written), then runs build/bench_ops (our ops, JSON lines) and the PyTorch baselines on the same
shapes: the selective scan as a sequential loop that unbinds over L (what a user without fused
kernels writes), causal conv1d + SiLU through F.conv1d, and the FFT long convolution through
torch.fft. Prints one table: times (median ms), our achieved GB/s as a share of the copy
bandwidth, and the speed-up over each baseline; then the minima of both sides (the least
disturbed runs on a shared machine) and, on the CPU, the naive double reference's forward.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def timer(device, fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2], ts[0]


def copy_bandwidth(device):
    n = (1 << 30) // 4 if device == "cuda" else (1 << 26) // 4  # 1 GiB on the GPU, 64 MiB on the CPU
    x = torch.randn(n, device=device)
    y = torch.empty_like(x)
    ms = timer(device, lambda: y.copy_(x), 10)[0]
    return 2 * n * 4 / (ms * 1e-3) / 1e9


# ---- baselines ---------------------------------------------------------------------------------
def scan_unbind(u, delta, A, Bm, Cm, Dk, z, bias):
    """The sequential selective scan in PyTorch, token-major (B, L, D) like ours."""
    dt = F.softplus(delta + bias)
    h = torch.zeros(u.shape[0], u.shape[2], A.shape[1], device=u.device, dtype=u.dtype)
    ys = []
    for dt_t, u_t, B_t, C_t in zip(dt.unbind(1), u.unbind(1), Bm.unbind(1), Cm.unbind(1)):
        h = torch.exp(dt_t.unsqueeze(-1) * A) * h + (dt_t * u_t).unsqueeze(-1) * B_t.unsqueeze(1)
        ys.append((h * C_t.unsqueeze(1)).sum(-1))
    y = torch.stack(ys, 1) + u * Dk
    return y * F.silu(z)


def bench_scan_torch(device, B, D, N, L, reps):
    g = torch.Generator(device=device).manual_seed(1)
    r = lambda *s: torch.randn(*s, device=device, generator=g)
    u, delta, z, dout = r(B, L, D), -3 * torch.rand(B, L, D, device=device, generator=g), r(B, L, D), r(B, L, D)
    A = -1 - 7 * torch.rand(D, N, device=device, generator=g)
    Bm, Cm, Dk = r(B, L, N), r(B, L, N), r(D)
    bias = -4 + 2 * torch.rand(D, device=device, generator=g)
    params = [u, delta, A, Bm, Cm, Dk, z, bias]
    with torch.no_grad():
        fwd = timer(device, lambda: scan_unbind(*params), reps)
    for p in params:
        p.requires_grad_(True)

    def fb():
        scan_unbind(*params).backward(dout)
        for p in params:
            p.grad = None

    return fwd, timer(device, fb, reps)


def bench_conv_torch(device, B, D, N, L, reps):
    """F.conv1d, depthwise, K = 4, padding K-1 then the first L outputs, bias, SiLU. PyTorch's
    native channels-first layout (B, D, L), so no transposes are timed."""
    K = 4
    x = torch.randn(B, D, L, device=device)
    w, b, dout = torch.randn(D, 1, K, device=device), torch.randn(D, device=device), torch.randn(B, D, L, device=device)
    f = lambda: F.silu(F.conv1d(x, w, b, padding=K - 1, groups=D)[..., :L])
    with torch.no_grad():
        fwd = timer(device, f, reps)
    for p in (x, w, b):
        p.requires_grad_(True)

    def fb():
        f().backward(dout)
        for p in (x, w, b):
            p.grad = None

    return fwd, timer(device, fb, reps)


def bench_fft_torch(device, B, D, N, L, reps):
    """The long convolution by torch.fft (rfft, multiply, irfft, first L), kernel length L, bias."""
    n = 2 * L
    x = torch.randn(B, D, L, device=device)
    k, b, dout = torch.randn(D, L, device=device), torch.randn(D, device=device), torch.randn(B, D, L, device=device)

    def f():
        y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]
        return y + b.unsqueeze(-1)

    with torch.no_grad():
        fwd = timer(device, f, reps)
    for p in (x, k, b):
        p.requires_grad_(True)

    def fb():
        f().backward(dout)
        for p in (x, k, b):
            p.grad = None

    return fwd, timer(device, fb, reps)


BASELINES = {
    "selective_scan": ("PyTorch unbind loop", bench_scan_torch),
    "conv1d_k4_silu": ("F.conv1d + SiLU", bench_conv_torch),
    "fft_conv_k=L": ("torch.fft", bench_fft_torch),
}


def parse_shape(s):
    return {k: int(v) for k, v in (kv.split("=") for kv in s.split())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--D", type=int, default=1536)
    ap.add_argument("--N", type=int, default=16)
    ap.add_argument("--L", default="512,2048,8192")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--baseline-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both sides (0: default)")
    ap.add_argument("--ops", default="scan,conv,fft")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "bench_ops"))
    ap.add_argument("--json", default="", help="also write the rows here")
    ap.add_argument("--skip-baseline", action="store_true", help="time our ops only (quick iteration; not for RESULTS.md)")
    a = ap.parse_args()
    env = dict(os.environ)
    if a.threads:
        torch.set_num_threads(a.threads)
        env["OMP_NUM_THREADS"] = str(a.threads)
    dev_name = torch.cuda.get_device_name(0) if a.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    bw = copy_bandwidth(a.device)
    print(f"device: {dev_name}; torch {torch.__version__}; copy bandwidth {bw:.0f} GB/s (read + write)")
    cmd = [a.bin, "--device", a.device, "--B", str(a.B), "--D", str(a.D), "--N", str(a.N), "--L", a.L,
           "--reps", str(a.reps), "--ops", a.ops]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    hdr = f"{'op':<16} {'shape':<26} {'ours fwd':>9} {'ours f+b':>9} {'GB/s f+b':>9} {'%copy':>6} " \
          f"{'base fwd':>9} {'base f+b':>9} {'x fwd':>7} {'x f+b':>7}  baseline"
    print(hdr)
    for r in rows:
        s = parse_shape(r["shape"])
        name, fn = BASELINES.get(r["op"], (None, None))
        bf = bb = bf_min = bb_min = float("nan")
        if fn and not a.skip_baseline:
            reps = a.baseline_reps if r["op"] == "selective_scan" else a.reps
            (bf, bf_min), (bb, bb_min) = fn(a.device, s["B"], s["D"], s.get("N", a.N), s["L"], reps)
        gbs = r["bytes_fwdbwd"] / (r["fwdbwd_ms"] * 1e-3) / 1e9
        r.update(base_fwd_ms=bf, base_fwdbwd_ms=bb, base_fwd_min_ms=bf_min, base_fwdbwd_min_ms=bb_min, baseline=name,
                 copy_gbs=bw, device_name=dev_name)
        print(f"{r['op']:<16} {r['shape']:<26} {r['fwd_ms']:9.3f} {r['fwdbwd_ms']:9.3f} {gbs:9.0f} "
              f"{100 * gbs / bw:5.1f}% {bf:9.3f} {bb:9.3f} {bf / r['fwd_ms']:7.1f} {bb / r['fwdbwd_ms']:7.1f}  {name}")
        print(f"{'  minimum':<16} {'':<26} {r['fwd_min_ms']:9.3f} {r['fwdbwd_min_ms']:9.3f} {'':9} {'':6} "
              f"{bf_min:9.3f} {bb_min:9.3f} {bf_min / r['fwd_min_ms']:7.1f} {bb_min / r['fwdbwd_min_ms']:7.1f}")
        if "ref_fwd_ms" in r:
            print(f"{'  naive ref fwd':<16} {'':<26} {r['ref_fwd_ms']:9.3f} ms (scalar, double; one run): "
                  f"{r['ref_fwd_ms'] / r['fwd_ms']:.1f}x our median fwd")
        sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
