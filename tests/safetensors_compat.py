#!/usr/bin/env python3
"""tests/safetensors_compat.py OURS THEIRS: the Python half of the safetensors compatibility test.

Called by tests/test_train_utils.cpp (which skips it when numpy or safetensors is missing).
1. Loads OURS, a checkpoint written by mambagrad, with the reference implementation
   (safetensors.numpy and safe_open) and checks every value, dtype, shape and the metadata.
2. Writes THEIRS with safetensors.numpy.save_file for the C++ side to read back.
Exits non-zero with a message on any mismatch.
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def main(ours, theirs):
    t = load_file(ours)
    expect = {
        "model.f": np.array([[0.5, -1.25, 3.0], [1e-30, -0.0, 7.0]], dtype=np.float32),
        "model.d": np.array([[1.0 / 3.0], [-2.5e300]], dtype=np.float64),
        "model.i": np.array([-1, 0, 1, 2147483647], dtype=np.int32),
    }
    assert sorted(t) == sorted(expect), f"tensor names {sorted(t)}"
    for k, v in expect.items():
        assert t[k].dtype == v.dtype, f"{k}: dtype {t[k].dtype}, expected {v.dtype}"
        assert t[k].shape == v.shape, f"{k}: shape {t[k].shape}, expected {v.shape}"
        assert t[k].tobytes() == v.tobytes(), f"{k}: values {t[k]}, expected {v}"
    with safe_open(ours, framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "pt", meta
    assert json.loads(meta["mambagrad.config"]) == {"name": "py"}, meta
    trainer = json.loads(meta["mambagrad.trainer"])
    assert trainer == {"epoch": 1, "step": 2, "cursor": 3, "rng_seed": 4, "rng_offset": 5}, trainer

    save_file(
        {
            "np.f32": (np.arange(6, dtype=np.float32) * 1.5).reshape(2, 3),
            "np.f64": np.array([0.1, 0.2, -1e-300], dtype=np.float64),
            "np.i32": np.array([5, -6], dtype=np.int32),
            "np.scalar": np.array(2.0, dtype=np.float32),
        },
        theirs,
        metadata={"from": "python"},
    )


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except AssertionError as e:
        print(f"safetensors_compat: {e}", file=sys.stderr)
        sys.exit(1)
