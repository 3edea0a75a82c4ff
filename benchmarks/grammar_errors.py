"""Token grammar errors of continuations, with and without the grammar mask.

    uv run python benchmarks/grammar_errors.py --model M --data-path PREPARED [--n 100]

Continues `--n` windows of real songs (the validation split, 4 candidates of 2 bars from the
last 8 bars before a random bar) and scores each continuation with miditok's
`tokens_errors`, once with the copilot's grammar mask and once with plain sampling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pianomuse.copilot import Copilot, Sampling
from pianomuse.data.shards import TokenShards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data-path", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--bars", type=int, default=2)
    args = ap.parse_args()
    cp = Copilot(args.model)
    shards = TokenShards(args.data_path, args.split)
    st = cp.tok.structure
    rng = np.random.default_rng(0)
    rates: dict[bool, list[float]] = {True: [], False: []}
    k = 4
    while len(rates[True]) < args.n:
        song = shards.song(int(rng.integers(len(shards))))
        bars = st.bar_starts(song)
        end = int(rng.integers(8, len(bars)))
        piece = cp.tok.decode(song[: bars[end]])
        for grammar in (True, False):
            r = cp.complete(
                piece,
                bars=args.bars,
                candidates=k,
                sampling=Sampling(seed=len(rates[True])),
                context_bars=8,
                grammar=grammar,
            )
            rates[grammar] += [cp.tok.tokens_errors(c.tokens) for c in r.candidates]
    print(
        f"{'grammar mask':<14} {'continuations':>14} {'mean error rate':>16} {'with any error':>15}"
    )
    for grammar in (True, False):
        x = np.asarray(rates[grammar][: args.n])
        name = "on" if grammar else "off"
        print(f"{name:<14} {len(x):>14} {x.mean():>16.4f} {np.mean(x > 0):>15.1%}")


if __name__ == "__main__":
    main()
