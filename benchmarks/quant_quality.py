"""What int8 weights cost a model's predictions, on held-out songs.

    uv run python benchmarks/quant_quality.py MIDI_FOLDER [--model M] [--windows 64]

The folder is read by the model's tokenizer and split as training splits it (10 % by content
hash); the validation windows (1,024 tokens) are scored by the model and by its int8 copy
(`pianomuse.model.quant`, what inference runs on a CPU): on the sequence path (a prefill,
bf16 matmuls of the int8 weights) over `--windows` windows, and through the traced int8
step token by token (decoding) over `--step-windows`. Prints bits per token of both, the
change, the mean KL divergence between their next-token distributions and how often their
most likely token agrees.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import torch

from pianomuse.bundled import default_model
from pianomuse.data.prepare import resolve_data
from pianomuse.data.samples import SampleStream, collate
from pianomuse.data.shards import TokenShards
from pianomuse.model import RWKVState
from pianomuse.model.checkpoint import load_checkpoint
from pianomuse.model.quant import quantize_int8
from pianomuse.model.traced import fast_step
from pianomuse.tokenizer import Tokenizer


def stepped(model, idx: torch.Tensor) -> torch.Tensor:
    """Logits [1, T, V] of decoding's path: the traced int8 step, token by token."""
    state = RWKVState.zeros(model.config, 1)
    step = fast_step(model, state, "int8")
    rows = []
    for t in range(idx.shape[1]):
        logits, state = step(idx[:, t], state)
        rows.append(logits)
    return torch.stack(rows, dim=1)


@torch.inference_mode()
def compare(model, int8_logits, stream: SampleStream, windows: int, batch: int) -> dict:
    """Bits, KL and top-token agreement of `model` (fp32) and `int8_logits(idx)` over the
    first `windows` windows of `stream`, `batch` at a time."""
    pad = stream.shards.tokenizer.pad_id
    n = min(windows, len(stream.items(0)))
    sums = {"fp32": 0.0, "int8": 0.0, "kl": 0.0, "agree": 0.0, "tokens": 0.0}
    for start in range(0, n, batch):
        b = collate([stream.sample(0, i) for i in range(start, min(start + batch, n))], pad)
        idx, tgt, mask = b["idx"], b["targets"], b["mask"].bool()
        lp32 = model(idx).log_softmax(-1)[mask]  # [tokens, V]
        lp8 = int8_logits(idx).log_softmax(-1)[mask]
        t = tgt[mask]
        sums["fp32"] -= float(lp32.gather(-1, t[:, None]).sum())
        sums["int8"] -= float(lp8.gather(-1, t[:, None]).sum())
        sums["kl"] += float((lp32.exp() * (lp32 - lp8)).sum())
        sums["agree"] += float((lp32.argmax(-1) == lp8.argmax(-1)).sum())
        sums["tokens"] += float(t.numel())
    tokens = sums.pop("tokens")
    return {k: v / tokens for k, v in sums.items()} | {"tokens": tokens}


def report(name: str, r: dict) -> None:
    bits32, bits8 = r["fp32"] / math.log(2), r["int8"] / math.log(2)
    change, agree = 100 * (bits8 / bits32 - 1), 100 * r["agree"]
    print(f"{name:34} {r['tokens']:8.0f} {bits32:11.4f} {bits8:11.4f} "
          f"{change:+9.3f} % {r['kl']:12.2e} {agree:9.2f} %")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a MIDI folder (e.g. POP909's songs)")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled one")
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--step-windows", type=int, default=8, help="decoded token by token")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.model or default_model()
    ckpt = load_checkpoint(path)
    tok = Tokenizer.from_config(ckpt.tokenizer_config)
    model = ckpt.model.eval()
    quant = quantize_int8(model)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = resolve_data(args.data, Path(tmp), val_fraction=0.1, tokenizer=tok)
        stream = SampleStream(TokenShards(prepared, "val"), 1024)
        seq = compare(model, quant, stream, args.windows, batch=4)
        steps = compare(model, lambda idx: stepped(model, idx), stream, args.step_windows, 1)
    print(f"model {path.name}, held-out windows of 1,024 tokens, {args.threads} thread(s)")
    print(f"{'path (int8 kernel)':34} {'tokens':>8} {'fp32 bits':>11} {'int8 bits':>11} "
          f"{'change':>11} {'KL nats/tok':>12} {'same top':>11}")  # fmt: skip
    report("sequence (bf16 matmul, prefill)", seq)
    report("one-token step (int8 kernel)", steps)


if __name__ == "__main__":
    main()
