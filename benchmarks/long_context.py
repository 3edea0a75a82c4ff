"""What a long context buys: bits per token of the second half of held-out songs, given the
whole first half, against the same tokens given only the last `--short` tokens before them.

    uv run python benchmarks/long_context.py --model M --data-path PREPARED [--songs 40]

Each song of the validation split is cut at its middle bar; the second half is scored
teacher-forced after (a) every token of the first half, (b) the window of the first half's
last bars that fits in `--short` tokens (cut at a bar, with its header, as the copilot cuts).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from pianomuse.copilot.prompts import context_window
from pianomuse.data.shards import TokenShards
from pianomuse.model import load_model


@torch.inference_mode()
def bits(model, prompt: np.ndarray, target: np.ndarray) -> float:
    """Bits of `target` after `prompt` (one prefill of both)."""
    ids = torch.as_tensor(np.concatenate([prompt, target]))[None]
    logits = model(ids)[0, len(prompt) - 1 : -1].float()
    nll = torch.nn.functional.cross_entropy(logits, ids[0, len(prompt) :], reduction="sum")
    return float(nll) / math.log(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data-path", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--songs", type=int, default=40)
    ap.add_argument("--short", type=int, default=1024)
    args = ap.parse_args()
    model = load_model(args.model).eval()
    shards = TokenShards(args.data_path, args.split)
    st = shards.tokenizer.structure
    shards.tokenizer.check_hash(model.meta.tokenizer_hash or "", what=f"the model {args.model}")
    total = {"whole first half": 0.0, f"last {args.short} tokens": 0.0}
    tokens = 0
    for i in range(min(len(shards), args.songs)):
        song = shards.song(i)
        bars = st.bar_starts(song)
        mid = len(bars) // 2
        target = song[bars[mid] :]
        whole, _ = context_window(st, song, mid, len(song))
        short, _ = context_window(st, song, mid, args.short)
        total["whole first half"] += bits(model, whole, target)
        total[f"last {args.short} tokens"] += bits(model, short, target)
        tokens += len(target)
    print(
        f"{args.model.name}: second halves of {min(len(shards), args.songs)} songs, {tokens} tokens"
    )
    for name, b in total.items():
        print(f"{'given the ' + name:<34} {b / tokens:.4f} bits per token")


if __name__ == "__main__":
    main()
