"""Training throughput of a preset and its model-FLOPs utilisation (MFU).

    uv run python benchmarks/train_speed.py [--preset small] [--steps 5] [--precision fp32]
    uv run --extra baseline python benchmarks/train_speed.py --gpt2   # GPT-2 side by side

The machine's matmul peak is measured in the same run (a large fp32/bf16 matmul on all
threads), so MFU = model FLOPs/s of a full training step (forward, backward, AdamW) divided by
that peak. Model FLOPs per token: 6 x the matmul parameters (forward 2, backward 4) plus the
WKV recurrence, ~10 N^2 per head and layer forward (decay, low-rank, outer-product updates
and the readout), x3 with the backward. With --gpt2, a Hugging Face GPT-2 of the same size
(`baseline_gpt2.gpt2`: the width that matches the parameters, positions aside) is timed on
the same batch, loss and optimizer in the same process, and the ratio of tokens/s printed.
"""

from __future__ import annotations

import argparse
import time

import torch

from pianomuse.allocator import keep_freed_memory
from pianomuse.model import RWKV7, RWKV7Config
from pianomuse.train.config import load_preset
from pianomuse.train.evaluate import autocast, masked_loss_sum
from pianomuse.train.schedule import make_optimizer

VOCAB = 392  # the piano REMI vocabulary


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def flops_per_token(cfg: RWKV7Config) -> float:
    matmul = 0
    model = RWKV7(cfg)
    for name, p in model.named_parameters():
        if p.ndim == 2 and name != "emb.weight" and ".enn." not in name:
            matmul += p.numel()
    wkv = 10 * cfg.head_size**2 * cfg.n_head * cfg.n_layer
    return 6 * matmul + 3 * wkv


def step_times(
    models: list[torch.nn.Module],
    B: int,
    T: int,
    precision: str,
    steps: int,
    device: torch.device,
    warmups: int = 1,
) -> tuple[list[float], float]:
    """Median seconds of a full training step of each model (idx [B, T] -> logits [B, T, V]):
    forward, loss, backward, AdamW with the project's grouping, on random tokens. The models'
    steps take turns, so a shared machine's changing load falls on all of them alike. Also
    returns the seconds of the warm-up steps (which compile a compiled model)."""
    idx = torch.randint(0, VOCAB, (B, T + 1), device=device)
    mask = torch.ones(B, T, device=device)

    def make_step(model: torch.nn.Module):
        opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), 1e-8)

        def step() -> None:
            with autocast(device, precision):
                logits = model(idx[:, :-1])
            loss = masked_loss_sum(logits, idx[:, 1:], mask) / (B * T)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()

        return step

    runs = [make_step(m) for m in models]
    t0 = time.perf_counter()
    for step in runs:
        for _ in range(warmups):  # warm-up (and compiling, for a compiled model)
            step()
    warm = time.perf_counter() - t0
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(steps):
        for step, ts in zip(runs, times, strict=True):
            t = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t)
    return [sorted(ts)[len(ts) // 2] for ts in times], warm


def measure(
    preset: str,
    backend: str,
    precision: str,
    steps: int,
    device: torch.device,
    batch_size: int | None = None,
    gpt2: bool = False,
    compile_: str = "none",
) -> dict:
    """Median step time, training tokens/s and MFU of a preset (random data, AdamW); with
    `gpt2`, also the tokens/s of a GPT-2 of the same size, timed in turns with it. `compile_`
    ("rwkv" or "both") runs those models' steps through torch.compile (as `train
    --compile` does); the compile time is reported, not counted in the steps."""
    p = load_preset(preset)
    cfg = RWKV7Config(VOCAB, p["n_layer"], p["n_embd"], p["head_size"], wkv_backend=backend)
    B, T = batch_size or p["batch_size"], p["max_seq_len"]
    torch.manual_seed(0)
    model = RWKV7(cfg).to(device)
    params = sum(q.numel() for q in model.parameters())
    models: list[torch.nn.Module] = [model]
    if gpt2:
        from baseline_gpt2 import Wrapped  # a script beside this one
        from baseline_gpt2 import gpt2 as make_gpt2

        torch.manual_seed(0)
        models.append(Wrapped(make_gpt2(VOCAB, params, p["n_layer"])).to(device))
    compiled = models[: 1 if compile_ == "rwkv" else len(models)] if compile_ != "none" else []
    models = [torch.compile(m) if m in compiled else m for m in models]
    dts, warm = step_times(models, B, T, precision, steps, device, warmups=2 if compiled else 1)
    tps = B * T / dts[0]
    fpt = flops_per_token(cfg)
    peak = matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32, device)
    out = {
        "params": params,
        "batch": [B, T],
        "step_s": dts[0],
        "tokens_per_s": tps,
        "flops_per_token": fpt,
        "peak": peak,
        "mfu": tps * fpt / peak,
        "compile": compile_,
        "warm_up_s": warm,
    }
    if gpt2:
        base = getattr(models[1], "_orig_mod", models[1])
        out["gpt2_params"] = sum(q.numel() for q in base.parameters()) - (
            base.m.transformer.wpe.weight.numel()
        )
        out["gpt2_tokens_per_s"] = B * T / dts[1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--backend", default="chunked")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--compile", default="none", choices=["none", "rwkv", "both"])
    ap.add_argument(
        "--glibc-default",
        action="store_true",
        help="leave the C allocator as it is (`pianomuse train` keeps freed memory on a CPU)",
    )
    ap.add_argument(
        "--gpt2",
        action="store_true",
        help="also time a GPT-2 of the same size side by side (needs --extra baseline)",
    )
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # As `pianomuse train` does; process-wide, so GPT-2 side by side runs under it too.
    kept = device.type == "cpu" and not args.glibc_default and keep_freed_memory()
    r = measure(
        args.preset, args.backend, args.precision, args.steps, device, args.batch_size, args.gpt2,
        args.compile,
    )  # fmt: skip
    (B, T), tps, fpt, peak = r["batch"], r["tokens_per_s"], r["flops_per_token"], r["peak"]
    print(
        f"device {device}, threads {torch.get_num_threads()}, preset {args.preset}, "
        f"{r['params'] / 1e6:.2f}M params, B={B} T={T}, "
        f"{args.precision}, wkv {args.backend}, torch.compile: {args.compile}, "
        f"freed memory kept: {'yes' if kept else 'no'}"
    )
    if args.compile != "none":
        print(f"warm-up steps, compiling included: {r['warm_up_s']:.0f} s (not counted)")
    print(f"{'measure':<28} {'value':>14}")
    print(f"{'step time (median)':<28} {r['step_s']:>13.3f}s")
    print(f"{'training tokens/s':<28} {tps:>14,.0f}")
    print(f"{'model GFLOP per token':<28} {fpt / 1e9:>14.4f}")
    print(f"{'achieved GFLOP/s':<28} {tps * fpt / 1e9:>14.1f}")
    print(f"{'matmul peak GFLOP/s':<28} {peak / 1e9:>14.1f}")
    print(f"{'MFU (achieved / peak)':<28} {r['mfu']:>14.1%}")
    if args.gpt2:
        g = r["gpt2_tokens_per_s"]
        print(f"{'GPT-2 same size tokens/s':<28} {g:>14,.0f}   ({r['gpt2_params'] / 1e6:.2f}M "
              f"params besides positions)")  # fmt: skip
        print(f"{'RWKV-7 / GPT-2 tokens/s':<28} {tps / g:>14.2f}x")


if __name__ == "__main__":
    main()
