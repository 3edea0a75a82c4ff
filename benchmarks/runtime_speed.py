"""ONNX Runtime (`pianomuse.runtime`, the export of `pianomuse export`) beside the PyTorch
paths decoding uses today (`fast_step`'s traced graphs, fp32 and int8), one thread, in one
process: a step at batch 1, 4 and 8, a prefill of 1,024 tokens to the last logits, and the
seconds a fresh process takes to import each stack.

    uv run python benchmarks/runtime_speed.py [--model M] [--repeats 300]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pianomuse.bundled import default_model
from pianomuse.model.checkpoint import load_model
from pianomuse.model.export import export_onnx
from pianomuse.model.state import RWKVState
from pianomuse.model.traced import fast_step
from pianomuse.runtime import OnnxModel, State


def ms(fn, n: int) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def import_s(module: str) -> float:
    """Median wall seconds of a fresh interpreter importing `module`, over 3."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=default_model(parts=True))
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model).eval()
    cfg = model.config
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, Path(tmp))
        ort = {p: OnnxModel(tmp, precision=p) for p in ("fp32", "int8")}
        rng = np.random.default_rng(0)
        rows = []
        with torch.inference_mode():
            for bsz in (1, 4, 8):
                tok = rng.integers(0, cfg.vocab_size, bsz)
                t_tok, st = torch.as_tensor(tok), RWKVState.zeros(cfg, bsz)
                row = {}
                for p in ("fp32", "int8"):
                    step, s = fast_step(model, st, p), st.clone()
                    row[f"torch {p}"] = ms(lambda f=step, s=s, t=t_tok: f(t, s), args.repeats)
                    o, zs = ort[p], State.zeros(ort[p].config, bsz)
                    row[f"onnx {p}"] = ms(lambda o=o, zs=zs, t=tok: o.step(t, zs), args.repeats)
                rows.append((f"step, batch {bsz} (ms)", row))
            idx = rng.integers(0, cfg.vocab_size, (1, 1024))
            t_idx = torch.as_tensor(idx)
            row = {"torch fp32": ms(lambda: model.prefill(t_idx, None, last_only=True), 5)}
            row["torch int8"] = float("nan")  # prefill runs fp32 eager on PyTorch
            for p in ("fp32", "int8"):
                row[f"onnx {p}"] = ms(lambda p=p: ort[p].prefill(idx), 5)
            rows.append(("prefill 1,024 (ms)", row))
    cols = ["torch fp32", "torch int8", "onnx fp32", "onnx int8"]
    print(f"{args.model.name}, 1 thread")
    print(f"{'':<24}" + "".join(f"{c:>12}" for c in cols) + f"{'int8 ratio':>12}")
    for name, row in rows:
        best_torch = np.nanmin([row["torch fp32"], row["torch int8"]])
        ratio = best_torch / row["onnx int8"]
        print(f"{name:<24}" + "".join(f"{row[c]:>12.3f}" for c in cols) + f"{ratio:>11.2f}x")
    print("(int8 ratio: the faster PyTorch path's time over ONNX int8's)")
    t_torch, t_rt = import_s("torch"), import_s("pianomuse.runtime.onnx, onnxruntime")
    print(f"import in a fresh process: torch {t_torch:.2f} s, the runtime {t_rt:.2f} s")


if __name__ == "__main__":
    main()
