"""The chord planner judged alone: the share of beats whose chord (root and quality) a plan of
the next bars gets right, against the chords the tokenizer reads in the true bars (POP909's
annotations), beside each expert alone and the per-song best of copying 1, 2, 4 or 8 bars back
(chosen after the fact: a bound, not a planner).

    uv run python benchmarks/chord_plan_eval.py PREPARED [--context 12 16 24] [--new 4]

PREPARED: a folder `pianomuse prepare` made with tokenizer version 2; its validation songs.
The planner is the bundled one (models/chord_planner.json) unless --planner names another.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pianomuse.bundled import PLANNER_NAME, bundled_file
from pianomuse.data.shards import TokenShards
from pianomuse.planner import EXPERTS, Selector, harmony_of, plan_chords, propose, same_chord


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--context", type=int, nargs="+", default=[12, 16, 24])
    ap.add_argument("--new", type=int, default=4)
    ap.add_argument("--split", default="val")
    ap.add_argument("--planner", type=Path, default=bundled_file(PLANNER_NAME))
    args = ap.parse_args()
    shards = TokenShards(args.data, args.split)
    songs = [harmony_of(shards.tokenizer, shards.song(i)) for i in range(len(shards))]
    selector = Selector.load(args.planner)
    print(f"{len(songs)} {args.split} songs, {args.new} bars planned after the context")
    rows: dict[str, dict[int, list[float]]] = {}
    for context in args.context:
        for h in songs:
            if h.bars < context + args.new:
                continue
            past = h.upto(context)
            want = h.codes[h.bar_starts[context] : h.bar_starts[context + args.new]]
            bar_beats = np.diff(h.bar_starts[context : context + args.new + 1]).tolist()
            got = {e: propose(past, e, len(want)) for e in EXPERTS}
            right = {
                e: 0.0 if p is None else float(same_chord(p, want).mean()) for e, p in got.items()
            }
            plans = plan_chords(past, bar_beats, 2, selector)
            scored = [float(same_chord(p.codes, want).mean()) for p in plans] or [0.0]
            found = {
                **right,
                "best of copy 1/2/4/8 (after the fact)": max(
                    right[f"copy {n}"] for n in (1, 2, 4, 8)
                ),
                "planner, first plan": scored[0],
                "planner, better of its first two": max(scored),
            }
            for name, value in found.items():
                rows.setdefault(name, {}).setdefault(context, []).append(value)
    head = "".join(f"{f'after {c} bars':>16}" for c in args.context)
    print(f"{'':<40}{head}")
    for name, by_context in rows.items():
        cells = "".join(f"{np.mean(by_context.get(c, [np.nan])):>16.3f}" for c in args.context)
        print(f"{name:<40}{cells}")
    counts = "".join(f"{len(rows['copy 8'].get(c, [])):>16}" for c in args.context)
    print(f"{'songs':<40}{counts}")


if __name__ == "__main__":
    main()
