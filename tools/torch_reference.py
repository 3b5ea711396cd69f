#!/usr/bin/env python3
"""tools/torch_reference.py: an independent PyTorch implementation of mambagrad's Mamba LM (with
and without global selection), to check a `mambagrad probe --out` file: the loss and every
parameter's gradient on the same weights and batch, in float64 (docs/global_selection.md).

    build/mambagrad probe --checkpoint run/final.safetensors --dtype f64 --out p.safetensors
    python3 tools/torch_reference.py p.safetensors [--device cpu|cuda] [--tol 1e-8]

The model is written from SPEC.md §2 and mamba_ssm's reference code (selective_scan_ref, the
authors' MambaMixer.slow_forward), not from our C++: PyTorch's conv1d for both causal convs
(padding k-1, first L outputs), a sequential scan, torch autograd for every derivative. Only
kind "longconv" global selection is supported (flashlongconv is refused), with either gate.

Per parameter it prints the largest |ours - torch| over the elements, where it is, and that
error relative to the largest |gradient| of the tensor; it fails (exit 1) when any relative error
exceeds --tol (default 1e-8 for a float64 probe, 2e-3 for a float32 one: ours then runs in f32
while the reference stays in f64).
"""
import argparse
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[b:end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def causal_depthwise_conv(x, weight, bias):
    """x (B, L, D), weight (D, 1, k), bias (D) -> (B, L, D): y_t = bias + sum_j w_j x_{t-k+1+j}."""
    L, k = x.shape[1], weight.shape[-1]
    y = F.conv1d(x.transpose(1, 2), weight, bias, padding=k - 1, groups=x.shape[2])
    return y[..., :L].transpose(1, 2)


def selective_scan(u, delta, A, Bm, Cm, Dskip, z):
    """u, delta, z (B, L, D); A (D, N); Bm, Cm (B, L, N); Dskip (D). h_t = exp(delta A) h + delta B u."""
    Bsz, L, D = u.shape
    h = u.new_zeros(Bsz, D, A.shape[1])
    ys = []
    for t in range(L):
        dA = torch.exp(delta[:, t, :, None] * A)                     # (B, D, N)
        h = dA * h + delta[:, t, :, None] * Bm[:, t, None, :] * u[:, t, :, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1))                  # (B, D)
    y = torch.stack(ys, 1) + u * Dskip
    return y * F.silu(z)


def selective_scan_parallel(u, delta, A, Bm, Cm, Dskip, z):
    """The same function by a Hillis-Steele scan over L (log2 L doubling steps on (B, L, D, N)
    tensors): h_t = a_t h_{t-1} + b_t with a = exp(delta A), b = delta B u. Much faster on a GPU
    than the loop above, and memory O(B L D N): for training (tools/torch_train.py)."""
    a = torch.exp(delta[..., None] * A)                               # (B, L, D, N)
    b = delta[..., None] * Bm[:, :, None, :] * u[..., None]
    L, off = u.shape[1], 1
    while off < L:
        b = torch.cat([b[:, :off], b[:, off:] + a[:, off:] * b[:, :-off]], 1)
        a = torch.cat([a[:, :off], a[:, off:] * a[:, :-off]], 1)
        off *= 2
    y = (b * Cm[:, :, None, :]).sum(-1) + u * Dskip
    return y * F.silu(z)


class Reference:
    def __init__(self, cfg, params, scan=selective_scan):
        self.scan = scan
        m = cfg["model"]
        self.n_layer = m["n_layer"]
        self.d_state = m["d_state"]
        self.dt_rank = m["dt_rank"] if m["dt_rank"] not in (0, "auto") else math.ceil(m["d_model"] / 16)
        self.eps = m["norm_eps"]
        gs = m.get("global_selection", {})
        if gs.get("enabled") and gs.get("kind", "longconv") != "longconv":
            sys.exit("torch_reference: global_selection.kind {} is not supported (longconv only)".format(gs["kind"]))
        self.gate = torch.sigmoid if gs.get("gate", "silu") == "sigmoid" else F.silu
        self.trace = None  # a list to receive each layer's gate, when set
        self.p = params

    def mixer(self, i, u):
        P = lambda n: self.p["backbone.layers.{}.mixer.{}".format(i, n)]
        D = P("D").shape[0]
        xz = u @ P("in_proj.weight").T
        x, z = xz[..., :D], xz[..., D:]
        xc = F.silu(causal_depthwise_conv(x, P("conv1d.weight"), P("conv1d.bias")))
        dbc = xc @ P("x_proj.weight").T
        R, N = self.dt_rank, self.d_state
        dt_r, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
        dt = dt_r @ P("dt_proj.weight").T
        key = "backbone.layers.{}.mixer.long_conv.weight".format(i)
        if key in self.p:  # global selection: the gate f(g) (silu or sigmoid), g from x before the short conv
            gate = self.gate(causal_depthwise_conv(x, P("long_conv.weight"), P("long_conv.bias")))
            if self.trace is not None:
                self.trace.append(gate.detach())
            dt = dt * gate
        delta = F.softplus(dt + P("dt_proj.bias"), beta=1.0, threshold=20.0)
        A = -torch.exp(P("A_log"))
        y = self.scan(xc, delta, A, Bm, Cm, P("D"), z)
        return y @ P("out_proj.weight").T

    def loss(self, inputs, positions, targets):
        E = self.p["backbone.embedding.weight"]
        h, residual = E[inputs.long()], None
        for i in range(self.n_layer):
            residual = h if residual is None else h + residual
            h = self.mixer(i, rmsnorm(residual, self.p["backbone.layers.{}.norm.weight".format(i)], self.eps))
        residual = h + residual
        hidden = rmsnorm(residual, self.p["backbone.norm_f.weight"], self.eps)
        flat = hidden.reshape(-1, hidden.shape[-1])[positions.long()]
        return F.cross_entropy(flat @ E.T, targets.long())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("probe", help="a file of `mambagrad probe --out`")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tol", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t, meta = read_safetensors(args.probe)
    cfg = json.loads(meta["mambagrad.config"])
    probe_f64 = t["loss"].dtype == torch.float64
    tol = args.tol if args.tol is not None else (1e-8 if probe_f64 else 2e-3)
    dev = torch.device(args.device)
    params = {k[len("param."):]: v.to(dev, torch.float64).requires_grad_(True) for k, v in t.items()
              if k.startswith("param.")}
    ref = Reference(cfg, params)
    loss = ref.loss(t["batch.inputs"].to(dev), t["batch.positions"].to(dev), t["batch.targets"].to(dev))
    loss.backward()
    ours = float(t["loss"])
    print("loss: ours {:.12g}, torch float64 {:.12g}, |diff| {:.3g}".format(ours, loss.item(), abs(ours - loss.item())))
    worst, failed = 0.0, []
    print("{:<48} {:>11} {:>11} {:>10}  {}".format("parameter", "|grad|max", "|diff|max", "rel", "at"))
    for name, p in params.items():
        g_ref = p.grad.detach().cpu()
        g_our = t["grad." + name].to(torch.float64)
        diff = (g_our - g_ref).abs()
        scale = g_ref.abs().max().item()
        dmax = diff.max().item()
        rel = dmax / scale if scale > 0 else dmax
        at = np.unravel_index(int(diff.argmax()), tuple(diff.shape)) if diff.numel() else ()
        worst = max(worst, rel)
        flag = "" if rel <= tol else "  FAIL"
        if rel > tol:
            failed.append(name)
        print("{:<48} {:11.4g} {:11.4g} {:10.3g}  {}{}".format(name, scale, dmax, rel, tuple(int(i) for i in at), flag))
    loss_rel = abs(ours - loss.item()) / max(abs(loss.item()), 1e-300)
    if loss_rel > tol:
        failed.append("loss")
    print("worst relative gradient error {:.3g} (tolerance {:.0e}); {}".format(
        worst, tol, "FAILED: " + ", ".join(failed) if failed else "all parameters agree"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
