"""The GPU check: in one run of under 10 minutes on a CUDA machine, what the CPU cannot test.

    uv run python benchmarks/gpu_check.py [--json PATH] [--steps 5]

1. flash-linear-attention's `chunk_rwkv7` against our chunked path (the plain twin): outputs,
   final state and the gradients of every input, in fp32 and in bf16 (relative errors).
2. Training tokens/s and MFU (against a measured bf16 or fp32 matmul peak) for the small and
   base presets, with the chunked path and fla, in fp32 and bf16.
3. Decoding tokens/s, one token a step, at batch 1 and 8 (the small preset).
4. nccl data parallel on all GPUs, when there are two or more: `pianomuse train` on the bundled
   sample songs through torchrun, a few steps, the ranks' weights compared after.
5. The deployment runtime on the GPU: the bundled model exported (`pianomuse export`) and run
   by ONNX Runtime's CUDA provider (the `onnxruntime-gpu` build in place of `onnxruntime`):
   its logits against the PyTorch model's, and steps a second at batch 1 and 8.

On a machine without CUDA it runs the parity of the chunked path against the reference scan
(the part it can) and says plainly what it skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pianomuse.model import RWKV7, RWKV7Config  # noqa: E402
from pianomuse.model.wkv import fla_available, wkv7_chunked, wkv7_reference  # noqa: E402
from pianomuse.train.config import load_preset  # noqa: E402
from train_speed import VOCAB, measure  # noqa: E402  (a sibling script)

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = {"fp32": 2e-3, "bf16": 5e-2}  # relative error (norm of the difference / norm)


def wkv_inputs(B: int, T: int, H: int, N: int, device: torch.device) -> list[torch.Tensor]:
    """Inputs shaped like a trained RWKV-7's: log-decay in (-0.61, 0), a = -kk and b = kk * a
    for a unit key kk (the in-context learning rate)."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    r, k, v = rnd(B, T, H, N) * 0.5, rnd(B, T, H, N) * 0.5, rnd(B, T, H, N) * 0.5
    w = -0.6 * torch.sigmoid(rnd(B, T, H, N))
    kk = torch.nn.functional.normalize(rnd(B, T, H, N), dim=-1)
    rate = torch.sigmoid(rnd(B, T, H, N))
    return [r, w, k, v, -kk, kk * rate]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def parity(fast, slow, dtype: torch.dtype, device: torch.device, T: int = 512) -> dict:
    """Relative errors of `fast` (inputs in `dtype`) against `slow` (fp32): y, state, grads."""
    base = wkv_inputs(2, T, 4, 64, device)
    state = torch.randn(2, 4, 64, 64, device=device) * 0.1
    out = {}
    grads = {}
    for name, fn, dt in (("slow", slow, torch.float32), ("fast", fast, dtype)):
        xs = [x.detach().clone().to(dt).requires_grad_() for x in base]  # own leaves
        y, s = fn(*xs, state.clone())
        (y.float().square().sum() + s.float().square().sum() * 1e-2).backward()
        out[name] = (y.detach(), s.detach())
        grads[name] = [x.grad for x in xs]
    errors = {
        "y": rel(out["fast"][0], out["slow"][0]),
        "state": rel(out["fast"][1], out["slow"][1]),
    }
    for n, gf, gs in zip("rwkvab", grads["fast"], grads["slow"], strict=True):
        errors[f"d{n}"] = rel(gf, gs)
    return errors


@torch.inference_mode()
def decode_speed(batch: int, device: torch.device, tokens: int = 200) -> float:
    p = load_preset("small")
    model = RWKV7(RWKV7Config(VOCAB, p["n_layer"], p["n_embd"], p["head_size"])).to(device)
    _, state = model.prefill(torch.randint(0, VOCAB, (batch, 64), device=device))
    tok = torch.zeros(batch, dtype=torch.long, device=device)
    for _ in range(10):
        model.step(tok, state, inplace=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(tokens):
        logits, state = model.step(tok, state, inplace=True)
        tok = logits.argmax(-1)
    torch.cuda.synchronize()
    return batch * tokens / (time.perf_counter() - t0)


def ddp_check(gpus: int, work: Path) -> dict:
    """A few data-parallel steps on every GPU through torchrun; rank 0's log says it ran."""
    data = work / "prepared"
    subprocess.run(
        [sys.executable, "-m", "pianomuse", "prepare", "--out", str(data)], check=True, cwd=ROOT
    )
    run = work / "run"
    train = ["train", "--data-path", str(data), "--output-dir", str(run), "--preset", "tiny"]
    steps = ["--max-steps", "10", "--eval-every", "10", "--device", "cuda"]
    launch = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}"]
    cmd = [*launch, "-m", "pianomuse", *train, *steps]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = {"returncode": proc.returncode, "seconds": time.perf_counter() - t0}
    metrics = run / "metrics.jsonl"
    if proc.returncode != 0 or not metrics.exists():
        out["tail"] = (proc.stdout + proc.stderr)[-2000:]
        return out
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    out["world"] = lines[0].get("world")
    out["last_loss"] = next(x["loss"] for x in reversed(lines) if "loss" in x)
    return out


def onnx_check(skipped: list[str]) -> dict:
    """The exported bundled model on ONNX Runtime's CUDA provider, where this build has it."""
    import numpy as np
    import onnxruntime as ort

    from pianomuse.bundled import default_model
    from pianomuse.model.checkpoint import load_model
    from pianomuse.model.export import export_onnx
    from pianomuse.runtime import OnnxModel, State

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        skipped.append("ONNX Runtime on CUDA (this onnxruntime build has no CUDA provider)")
        return {}
    model = load_model(default_model(parts=True)).eval()
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, Path(tmp))
        rt = OnnxModel(tmp, precision="fp32")
        idx = np.random.default_rng(0).integers(0, model.config.vocab_size, (1, 300))
        with torch.no_grad():
            want, _ = model.prefill(torch.as_tensor(idx), None, last_only=True)
        got, _ = rt.prefill(idx)
        out["onnx_cuda_providers"] = rt.providers
        out["onnx_cuda_max_logit_diff"] = float(np.abs(got - want.numpy()).max())
        for batch in (1, 8):
            state, tok = State.zeros(rt.config, batch), np.zeros(batch, np.int64)
            rt.step(tok, state)
            t0 = time.perf_counter()
            for _ in range(200):
                _, state = rt.step(tok, state)
            out[f"onnx_cuda_b{batch}_steps_per_s"] = 200 / (time.perf_counter() - t0)
    b1, b8 = out["onnx_cuda_b1_steps_per_s"], out["onnx_cuda_b8_steps_per_s"]
    diff = out["onnx_cuda_max_logit_diff"]
    print(f"ONNX Runtime on {out['onnx_cuda_providers'][0]}: max logit difference {diff:.1e}; "
          f"steps/s batch 1 {b1:,.0f}, batch 8 {b8:,.0f}")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    report: dict = {"skipped": []}
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name() if cuda else "CPU (no CUDA)"
    print(f"torch {torch.__version__}, device: {name}")

    # 1. The fast WKV against its twin.
    if cuda and fla_available():
        from pianomuse.model.wkv import wkv7_fla

        for prec, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            report[f"fla_vs_chunked_{prec}"] = parity(wkv7_fla, wkv7_chunked, dt, device)
    else:
        why = "no CUDA device" if not cuda else "flash-linear-attention is not installed"
        report["skipped"].append(f"fla parity ({why})")
        report["chunked_vs_reference_fp32"] = parity(
            wkv7_chunked, wkv7_reference, torch.float32, device, T=128
        )
    for name, errs in ((k, v) for k, v in report.items() if k.endswith(("fp32", "bf16"))):
        tol = TOLERANCE["bf16" if name.endswith("bf16") else "fp32"]
        worst = max(errs.values())
        each = " ".join(f"{k} {v:.1e}" for k, v in errs.items())
        verdict = "ok" if worst <= tol else "FAIL"
        print(f"{name:<28} worst relative error {worst:.2e} (tolerance {tol:g}): {verdict}")
        print(f"{'':<28} {each}")

    # 2.-3. Speed on the GPU.
    if cuda:
        backends = ["chunked"] + (["fla"] if fla_available() else [])
        for preset in ("small", "base"):
            for backend in backends:
                for prec in ("fp32", "bf16"):
                    r = measure(preset, backend, prec, args.steps, device)
                    report[f"train_{preset}_{backend}_{prec}"] = r
                    print(
                        f"train {preset:<5} {backend:<7} {prec}: {r['tokens_per_s']:>10,.0f} "
                        f"tokens/s, MFU {r['mfu']:.1%} (B, T = {r['batch']})"
                    )
        for batch in (1, 8):
            tps = decode_speed(batch, device)
            report[f"decode_b{batch}_tokens_per_s"] = tps
            print(f"decode batch {batch}: {tps:,.0f} tokens/s")
    else:
        report["skipped"] += ["training tokens/s and MFU on a GPU", "decoding on a GPU"]

    # 4. Data parallel over nccl.
    gpus = torch.cuda.device_count() if cuda else 0
    if gpus >= 2:
        with tempfile.TemporaryDirectory() as tmp:
            report["ddp"] = ddp_check(gpus, Path(tmp))
        print(f"nccl DDP on {gpus} GPUs: {report['ddp']}")
    else:
        report["skipped"].append(f"nccl DDP (needs two or more GPUs; this machine has {gpus})")

    # 5. The ONNX runtime on CUDA.
    report.update(onnx_check(report["skipped"]))

    for what in report["skipped"]:
        print(f"skipped: {what}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
