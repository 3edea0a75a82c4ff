"""What int8 weights cost a model's predictions, on held-out songs.

    uv run python benchmarks/quant_quality.py MIDI_FOLDER [--model M] [--windows 64]

The folder is read by the model's tokenizer and split as training splits it (10 % by content
hash); the validation windows (1,024 tokens) are scored by the model and by its int8 copy
(`pianomuse.model.quant`, what decoding runs on a CPU). Prints bits per token of both, the
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
from pianomuse.model.checkpoint import load_checkpoint
from pianomuse.model.quant import quantize_int8
from pianomuse.tokenizer import Tokenizer


@torch.inference_mode()
def compare(model, quant, stream: SampleStream, windows: int, batch: int = 4) -> dict:
    pad = stream.shards.tokenizer.pad_id
    n = min(windows, len(stream.items(0)))
    sums = {"fp32": 0.0, "int8": 0.0, "kl": 0.0, "agree": 0.0, "tokens": 0.0}
    for start in range(0, n, batch):
        b = collate([stream.sample(0, i) for i in range(start, min(start + batch, n))], pad)
        idx, tgt, mask = b["idx"], b["targets"], b["mask"].bool()
        lp32 = model(idx).log_softmax(-1)[mask]  # [tokens, V]
        lp8 = quant(idx).log_softmax(-1)[mask]
        t = tgt[mask]
        sums["fp32"] -= float(lp32.gather(-1, t[:, None]).sum())
        sums["int8"] -= float(lp8.gather(-1, t[:, None]).sum())
        sums["kl"] += float((lp32.exp() * (lp32 - lp8)).sum())
        sums["agree"] += float((lp32.argmax(-1) == lp8.argmax(-1)).sum())
        sums["tokens"] += float(t.numel())
    tokens = sums.pop("tokens")
    return {k: v / tokens for k, v in sums.items()} | {"tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a MIDI folder (e.g. POP909's songs)")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled one")
    parser.add_argument("--windows", type=int, default=64)
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
        r = compare(model, quant, stream, args.windows)
    bits32, bits8 = r["fp32"] / math.log(2), r["int8"] / math.log(2)
    print(f"model {path.name}, {r['tokens']:.0f} held-out tokens, {args.threads} thread(s)")
    print(f"{'weights':8} {'bits/token':>11}")
    print(f"{'fp32':8} {bits32:11.4f}")
    print(f"{'int8':8} {bits8:11.4f}   change {100 * (bits8 / bits32 - 1):+.3f} %")
    print(f"mean KL(fp32 || int8) {r['kl']:.2e} nats/token; "
          f"same top token {100 * r['agree']:.2f} %")  # fmt: skip


if __name__ == "__main__":
    main()
