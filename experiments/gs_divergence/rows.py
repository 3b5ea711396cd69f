#!/usr/bin/env python3
"""experiments/gs_divergence/rows.py: one result row per run directory of diagnose.sh or
validate.sh, appended to experiments/results/gs_divergence.jsonl (rows are never edited).

    python3 experiments/gs_divergence/rows.py RUNS_DIR --script diagnose.sh --commit C \\
        --device "NVIDIA H100 80GB HBM3" --date 2026-12-06 --flags NAME='FLAGS' ...

A row: the run's name, its flags beyond the issue's command, where it ran, and what its
metrics.jsonl says: the steps logged, the mean training loss near steps 400 / 1200 / 2000 / 3000
and at the end, the largest gradient norm before clipping (and its step), the first gradient
warning, every validation evaluation and the test table when the run finished.
"""
import argparse
import json
import os
import sys


def loss_near(train, step):
    rows = [r for r in train if r["step"] <= step]
    return round(rows[-1]["loss"], 4) if rows and rows[-1]["step"] >= step - 200 else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("--script", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--limit_s", type=float, default=None, help="the runs' wall-clock limit")
    ap.add_argument("--flags", nargs="*", default=[], help="NAME=FLAGS of each run")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "results", "gs_divergence.jsonl"))
    args = ap.parse_args()
    flags = dict(f.split("=", 1) for f in args.flags)
    with open(args.out, "a") as out:
        for name in sorted(flags):
            path = os.path.join(args.runs, name, "metrics.jsonl")
            rows = [json.loads(l) for l in open(path)]
            train = [r for r in rows if r["kind"] == "train"]
            big = max(train, key=lambda r: r["grad_norm"])
            warn = next((r for r in rows if r["kind"] == "warning"), None)
            row = {
                "run": name, "script": args.script, "flags": flags[name], "commit": args.commit, "device": args.device,
                "date": args.date, "limit_s": args.limit_s,
                "steps_logged": train[-1]["step"], "train_s": round(train[-1]["train_s"], 1),
                "loss_400": loss_near(train, 400), "loss_1200": loss_near(train, 1200),
                "loss_2000": loss_near(train, 2000), "loss_3000": loss_near(train, 3000),
                "loss_last": round(train[-1]["loss"], 4),
                "grad_norm_max": big["grad_norm"], "grad_norm_max_step": big["step"],
                "grad_norm_last": train[-1]["grad_norm"],
                "first_warning": {k: warn[k] for k in ("step", "parameter", "grad_norm", "running_median")} if warn else None,
                "valid": [{"step": r["step"], "query_acc": r["query_acc"], "loss": round(r["loss"], 4)}
                          for r in rows if r["kind"] == "eval"],
                "test": [{"variant": r["variant"], "query_acc": r["query_acc"], "token_acc": r["token_acc"],
                          "subtasks": r["subtasks"]} for r in rows if r["kind"] == "test"],
            }
            out.write(json.dumps(row) + "\n")
            print(json.dumps({k: row[k] for k in ("run", "steps_logged", "loss_last", "grad_norm_max", "grad_norm_max_step")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
