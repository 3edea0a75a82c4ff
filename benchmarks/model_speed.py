"""Speed of the RWKV-7 execution paths against their slow twins and BlinkDL's `rwkv` package.

    uv run python benchmarks/model_speed.py [--threads N] [--repeats R]

Prints one table: each row a workload, the baseline and our time side by side, and the ratio
(baseline time / our time, higher is better) next to its target:

1. WKV-7 forward + backward, B=4, T=1024, H=4, N=64: `wkv7_chunked` vs `wkv7_reference`.
2. Prefill of 1024 tokens, 6 layers x 256 wide, to the last token's logits and the state
   (what decoding needs): the prefill inference runs (the int8 copy's, bf16 matmuls) and
   `RWKV7.prefill` in fp32 vs the `rwkv` package's forward, both with `last_only` /
   `full_output=False`.
3. Decoding one token at a time: the step decoding runs (`fast_step`: the traced graph on a
   CPU, of the int8 copy by default, `pianomuse.model.quant`) vs the fp32 graph, its eager
   twin `RWKV7.step` and the `rwkv` package's one-token forward ("cpu fp32"), and 8
   candidates decoded as one batch vs one (aggregate tokens/s).

4. The same prefill and decoding on ONNX Runtime (`pianomuse.runtime`, the engine the copilot
   runs where a model has its export: int8 graphs), against the same baselines.

A second table gives the time of the model's weight matmuls alone for the same workloads: no
implementation with those weights can be faster, so baseline / that time bounds every ratio.
What int8 weights cost in loss is measured on real songs by `benchmarks/quant_quality.py`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from pianomuse.generate.engine import DEFAULT_PRECISION, PRECISIONS
from pianomuse.model import RWKV7, RWKV7Config, save_official
from pianomuse.model.quant import inference_model, quantize_int8
from pianomuse.model.traced import fast_step
from pianomuse.model.wkv import wkv7_chunked, wkv7_reference

VOCAB = 512  # about the size of the piano REMI vocabulary


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time in seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wkv_inputs(bsz: int, seq: int, n_head: int, head: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shape = (bsz, seq, n_head, head)
    r, k, v = (torch.randn(shape, generator=gen) for _ in range(3))
    w = -0.6065 * torch.sigmoid(torch.randn(shape, generator=gen))
    kk = torch.nn.functional.normalize(torch.randn(shape, generator=gen), dim=-1)
    alpha = torch.sigmoid(torch.randn(shape, generator=gen))
    return [x.requires_grad_(True) for x in (r, w, k, v, -kk, kk * alpha)]


def fwd_bwd(fn: Callable, inputs: list[torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        for x in inputs:
            x.grad = None
        y, s = fn(*inputs)
        (y.sum() + s.sum()).backward()

    return run


def bench_wkv(repeats: int) -> list[tuple]:
    inputs = wkv_inputs(4, 1024, 4, 64)
    ref = timeit(fwd_bwd(wkv7_reference, inputs), max(1, repeats // 2))
    rows = []
    for chunk in (16, 32, 64):
        ours = timeit(fwd_bwd(lambda *a, c=chunk: wkv7_chunked(*a, chunk_len=c), inputs), repeats)
        rows.append((f"WKV fwd+bwd B4 T1024 H4 N64 (chunk {chunk})", "reference scan", ref, ours,
                     15.0))  # fmt: skip
    return rows


def random_model(seed: int = 0) -> RWKV7:
    """6 x 256 model with official init plus noise (so no path is trivially zero)."""
    torch.manual_seed(seed)
    model = RWKV7(RWKV7Config(vocab_size=VOCAB, n_layer=6, n_embd=256, head_size=64))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def load_rwkv_package(model: RWKV7, folder: Path):
    """BlinkDL's `rwkv` package on the same weights (strategy "cpu fp32", TorchScript on)."""
    os.environ["RWKV_V7_ON"] = "1"  # read by rwkv.model at import
    os.environ["RWKV_JIT_ON"] = "1"
    os.environ["RWKV_CUDA_ON"] = "0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from rwkv.model import RWKV

        save_official(model, folder / "bench.pth")
        return RWKV(str(folder / "bench"), "cpu fp32")  # the package appends ".pth"


@torch.inference_mode()
def bench_prefill(model: RWKV7, ref, repeats: int) -> list[tuple]:
    tokens = torch.randint(0, VOCAB, (1, 1024), generator=torch.Generator().manual_seed(1))
    quant = inference_model(model, DEFAULT_PRECISION)
    ours = timeit(lambda: quant.prefill(tokens, last_only=True), repeats)
    ours32 = timeit(lambda: model.prefill(tokens, last_only=True), repeats)
    theirs = timeit(lambda: ref.forward(tokens[0].tolist(), None, full_output=False), 2)
    return [
        ("prefill 1024 tok, 6x256, fp32 weights", "rwkv pkg forward", theirs, ours32, 0.0),
        (f"prefill 1024 tok, 6x256, {DEFAULT_PRECISION} (default)", "rwkv pkg forward", theirs,
         ours, 5.0),
    ]  # fmt: skip


@torch.inference_mode()
def bench_decode(model: RWKV7, ref, repeats: int, n_tok: int = 64) -> list[tuple]:
    prompt = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(2))
    toks = torch.randint(0, VOCAB, (n_tok,), generator=torch.Generator().manual_seed(3))
    _, state = model.prefill(prompt)
    _, their_state0 = ref.forward(prompt[0].tolist(), None)

    steps = {}
    for precision in PRECISIONS:  # what decoding runs: the traced step of each precision
        t0 = time.perf_counter()
        steps[precision] = fast_step(model, state, precision)
        print(f"first call of fast_step ({precision}: quantising, tracing, warming up; once "
              f"per model): {time.perf_counter() - t0:.2f} s")  # fmt: skip

    def ours(precision: str, batch: int) -> Callable[[], None]:
        step, start = steps[precision], state.expand(batch)

        def run() -> None:
            s = start.clone()  # every side copies the prompt state once per run
            for t in range(n_tok):
                _, s = step(toks[t : t + 1].expand(batch), s)

        return run

    def eager_one() -> None:
        s = state.clone()
        for t in range(n_tok):
            _, s = model.step(toks[t : t + 1], s, inplace=True)

    def theirs_one() -> None:
        s = [x.clone() for x in their_state0]
        for t in toks.tolist():
            _, s = ref.forward([t], s)

    t_eager = timeit(eager_one, repeats)
    t32 = timeit(ours("fp32", 1), repeats)
    t8 = timeit(ours(DEFAULT_PRECISION, 1), repeats)
    t_theirs = timeit(theirs_one, repeats)
    t_batch = timeit(ours(DEFAULT_PRECISION, 8), repeats)
    # Aggregate tokens/s of 8 candidates in one batch vs one: 8 * t_one / t_batch.
    return [
        ("decode B=1: traced fp32 step vs eager twin", "RWKV7.step eager", t_eager / n_tok,
         t32 / n_tok, 1.0),
        ("decode B=1 per token, fp32 weights", "rwkv pkg forward", t_theirs / n_tok,
         t32 / n_tok, 0.0),
        (f"decode B=1 per token, {DEFAULT_PRECISION} (default)", "rwkv pkg forward",
         t_theirs / n_tok, t8 / n_tok, 4.0),
        (f"decode B=8 vs B=1, aggregate tok/s, {DEFAULT_PRECISION}", "same step, B=1",
         t8 / n_tok, t_batch / n_tok / 8, 6.0),
    ]  # fmt: skip


def bench_onnx(model: RWKV7, ref, repeats: int, folder: Path, n_tok: int = 64) -> list[tuple]:
    """Rows of the ONNX engine: a prefill of 1024 tokens and decoding at batch 1 and 8."""
    import numpy as np

    from pianomuse.model.export import export_onnx
    from pianomuse.runtime import OnnxModel, State

    export_onnx(model, folder, precisions=(DEFAULT_PRECISION,))
    rt = OnnxModel(folder, DEFAULT_PRECISION, threads=torch.get_num_threads())
    tokens = torch.randint(0, VOCAB, (1, 1024), generator=torch.Generator().manual_seed(1))
    toks = torch.randint(0, VOCAB, (n_tok,), generator=torch.Generator().manual_seed(3)).numpy()
    prompt = tokens[:, :16]
    _, start = rt.prefill(prompt.numpy())
    _, their_state0 = ref.forward(prompt[0].tolist(), None)

    def theirs_one() -> None:
        s = [x.clone() for x in their_state0]
        for t in toks.tolist():
            _, s = ref.forward([t], s)

    def ours(batch: int) -> Callable[[], None]:
        first = start.select([0] * batch)

        def run() -> None:
            s: State = first
            for t in range(n_tok):
                _, s = rt.step(np.repeat(toks[t : t + 1], batch), s)

        return run

    t_pre = timeit(lambda: rt.prefill(tokens.numpy()), repeats)
    t_pre_theirs = timeit(lambda: ref.forward(tokens[0].tolist(), None, full_output=False), 2)
    t_one, t_eight = timeit(ours(1), repeats), timeit(ours(8), repeats)
    t_theirs = timeit(theirs_one, repeats)
    return [
        ("prefill 1024 tok, 6x256, onnx int8", "rwkv pkg forward", t_pre_theirs, t_pre, 5.0),
        ("decode B=1 per token, onnx int8", "rwkv pkg forward", t_theirs / n_tok,
         t_one / n_tok, 4.0),
        ("decode B=8 vs B=1, aggregate tok/s, onnx", "same step, B=1", t_one / n_tok,
         t_eight / n_tok / 8, 6.0),
    ]  # fmt: skip


@torch.inference_mode()
def matmul_floor(model: RWKV7, rows: int, repeats: int, precision: str = "fp32") -> float:
    """Time of every weight matmul of one pass over `rows` token positions, nothing else:
    the projections (fp32, or the int8 copy's `Int8Linear`s: the int8 kernel for up to 8
    rows, as in a step, the bf16 matmul of a sequence above) and the fp32 LoRAs. A sequence
    needs the head and the last channel mix for its last token only (as a prefill to the
    last token's logits)."""
    source = model if precision == "fp32" else quantize_int8(model)
    last = source.blocks[-1].ffn
    once = [source.head, last.key, last.value]  # on one row of a sequence, on all of a step
    linears, loras = list(once), []
    for block in source.blocks:
        att, ffn = block.att, block.ffn
        linears += [att.receptance, att.key, att.value, att.output]
        linears += [ffn.key, ffn.value] if ffn is not last else []
        loras += [p for name, p in att.named_parameters(recurse=False) if name[-1] in "12"]
    step = rows <= 8

    def shape(lin: torch.nn.Module) -> tuple[int, ...]:
        if step:
            return (rows, lin.in_features)  # [B, in]
        return (1, 1 if lin in once else rows, lin.in_features)  # [B, T, in]

    lin_in = [torch.randn(*shape(lin)) for lin in linears]
    lora_in = [torch.randn(rows, w.shape[0]) for w in loras]  # LoRA weight: [in, out]

    def run() -> None:
        for x, lin in zip(lin_in, linears, strict=True):
            lin(x)
        for x, w in zip(lora_in, loras, strict=True):
            x @ w

    return timeit(run, repeats)


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = bench_wkv(args.repeats)
    model = random_model()
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_rwkv_package(model, Path(tmp))
        rows += bench_prefill(model, ref, args.repeats)
        rows += bench_decode(model, ref, args.repeats)
        torch_rows = len(rows)
        rows += bench_onnx(model, ref, args.repeats, Path(tmp) / "onnx")
    floors = {(n, p): matmul_floor(model, n, args.repeats * 4, p)
              for n, p in ((1024, "fp32"), (1024, "int8"), (1, "fp32"), (1, "int8"),
                           (8, "int8"))}  # fmt: skip

    print(f"\ntorch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), median of {args.repeats}")  # fmt: skip
    header = f"{'workload':44} {'baseline':18} {'baseline t':>12} {'ours t':>12} {'ratio':>7} "
    print(header + f"{'target':>7}  ok")
    for name, base_name, base, ours, target in rows:
        ratio = base / ours
        ok = "yes" if ratio >= target else "NO"
        target_s = f"{target:6.0f}x" if target else "      -"
        print(f"{name:44} {base_name:18} {fmt_time(base):>12} {fmt_time(ours):>12} "
              f"{ratio:6.1f}x {target_s}  {ok if target else ''}")  # fmt: skip

    last = torch_rows
    pre32, pre8, dec32, dec8, batch = (rows[last - k] for k in (6, 5, 3, 2, 1))
    print("\nweight matmuls alone (a floor for any implementation of those weights) and the "
          "bound they set")  # fmt: skip
    print(f"{'workload':44} {'matmuls t':>12} {'ours t':>12} {'bound on ratio':>16}")
    bounds = [
        (pre32, floors[1024, "fp32"]),
        (pre8, floors[1024, "int8"]),
        (dec32, floors[1, "fp32"]),
        (dec8, floors[1, "int8"]),
        (batch, floors[8, "int8"] / 8),
    ]
    for (name, _, base, ours, _), floor in bounds:
        print(f"{name:44} {fmt_time(floor):>12} {fmt_time(ours):>12} {base / floor:15.1f}x")


if __name__ == "__main__":
    main()
