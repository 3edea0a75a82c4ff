"""Long continuations: 16 new bars after 12, checked for what a listener notices first.

    uv run python benchmarks/long_continuations.py PATH/TO/pop909 [--model M] [--songs 20]

Per continuation: grammar errors of its tokens, empty bars (no note starts in them), and bars
that repeat the bar before them note for note; with the same counts for the true bars 13-28.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pianomuse.bundled import default_model
from pianomuse.copilot import Copilot, Sampling
from pianomuse.data.prepare import read_song, songs_in_split
from pianomuse.evaluation.harmony import bar_sets
from pianomuse.tokenizer import cut_score, notes_in_beats


def faults(notes: dict[str, np.ndarray], lines: np.ndarray) -> tuple[int, int]:
    """(empty bars, bars equal to the bar before them)."""
    sets = bar_sets(notes, lines)
    pairs = zip(sets[:-1], sets[1:], strict=True)
    return sum(not s for s in sets), sum(a == b and bool(a) for a, b in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--songs", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=2)
    args = ap.parse_args()
    cp = Copilot(args.model or default_model())
    # bars, empty bars, repeated bars, the highest token error rate of a continuation
    rows = {"model": [0, 0, 0, 0.0], "true bars": [0, 0, 0, 0.0]}
    for i, path in enumerate(songs_in_split(args.data, "val")[: args.songs]):
        score = read_song(path)
        piece = cp.read(score)
        if piece.n_bars < 28:
            continue
        tpq = piece.tpq
        cut = cut_score(score, int(piece.bar_ticks[12]))
        r = cp.complete(cut, bars=16, candidates=args.candidates, sampling=Sampling(seed=i))
        for c in r.candidates:
            e, rep = faults(notes_in_beats(c.new), c.new_beats)
            rows["model"][0] += 16
            rows["model"][1] += e
            rows["model"][2] += rep
            rows["model"][3] = max(rows["model"][3], cp.tok.tokens_errors(c.tokens))
        n = notes_in_beats(score)
        lines = piece.bar_ticks[12:29] / tpq
        e, rep = faults(n, lines)
        rows["true bars"][0] += 16
        rows["true bars"][1] += e
        rows["true bars"][2] += rep
    print(f"{'':<12} {'bars':>6} {'empty':>8} {'repeated':>9} {'max token errors':>17}")
    for name, (bars, empty, repeated, err) in rows.items():
        print(f"{name:<12} {bars:>6} {empty:>8} {repeated:>9} {err:>17.4f}")


if __name__ == "__main__":
    main()
