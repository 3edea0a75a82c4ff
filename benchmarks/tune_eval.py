"""`pianomuse tune` judged: each method at equal minutes on a style (by default the 24 Bach
chorales of tests/data/style, every fifth held out), by the held-out pieces' bits per note,
and by continuations of the held-out pieces (4 bars after their first 4) written with and
without the style, measured against their true continuations (music statistics: distance
in pitch classes, groove, notes a bar, polyphony; lower is closer).

    uv run python benchmarks/tune_eval.py [--folder DIR] [--model M] [--minutes 5]
        [--methods head,lora,state]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pianomuse.bundled import default_model
from pianomuse.copilot import Copilot, Sampling
from pianomuse.data.files import find_midi_files
from pianomuse.data.prepare import read_song
from pianomuse.evaluation.music_stats import distance, stats
from pianomuse.model import load_model
from pianomuse.style import METHODS, Style, tune
from pianomuse.tokenizer import Tokenizer, cut_score, notes_in_beats

ROOT = Path(__file__).resolve().parent.parent
CONTEXT, NEW = 4, 4


def continuations(cp: Copilot, songs: list, tpq_lines: list) -> dict[str, float]:
    """Mean distance of continuations (2 a song) to the true ones' statistics."""
    rows = []
    for score, lines in zip(songs, tpq_lines, strict=True):
        cut = cut_score(score, int(lines[CONTEXT]))
        r = cp.complete(cut, bars=NEW, candidates=2, sampling=Sampling(seed=1))
        true = notes_in_beats(score)
        c0, c1 = lines[CONTEXT] / score.tpq, lines[CONTEXT + NEW] / score.tpq
        keep = (true["onset"] >= c0) & (true["onset"] < c1)
        truth = {k: v[keep] for k, v in true.items()}
        truth["onset"] = truth["onset"] - c0
        want = stats(truth, NEW)
        for c in r.candidates:
            rows.append(distance(stats(notes_in_beats(c.new), NEW), want))
    return {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=ROOT / "tests" / "data" / "style")
    ap.add_argument("--model", type=Path, default=default_model(parts=True))
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    args = ap.parse_args()
    base = load_model(args.model)
    tok = Tokenizer.from_config(base.meta.tokenizer_config)
    scores = [read_song(f) for f in find_midi_files(args.folder)]
    pieces = [tok.encode(s) for s in scores]
    held = [i for i in range(len(pieces)) if i % 5 == 0]
    train = [p for i, p in enumerate(pieces) if i % 5]
    held_scores = [scores[i] for i in held]
    lines = [tok.read_piece(s).bar_ticks for s in held_scores]
    print(f"{args.folder.name}: {len(train)} pieces to learn, {len(held)} held out")
    rows = {"base model": (None, continuations(Copilot(args.model), held_scores, lines))}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        style: Style = tune(base, tok, train, [pieces[i] for i in held], method=method,
                            minutes=args.minutes)  # fmt: skip
        cp = Copilot(args.model, style=style)
        rows[f"{method}, {time.perf_counter() - t0:.0f} s"] = (
            style.meta,
            continuations(cp, held_scores, lines),
        )
    first = next(iter(rows.values()))[1]
    print(f"{'':<24}{'bits/note':>12}" + "".join(f"{k:>16}" for k in first))
    for name, (meta, dist) in rows.items():
        bits = "-" if meta is None else f"{meta['bits_per_note_after']:.3f}"
        print(f"{name:<24}{bits:>12}" + "".join(f"{v:>16.3f}" for v in dist.values()))
    print("held-out bits per note of the base model:", next(
        m["bits_per_note_before"] for m, _ in rows.values() if m is not None))  # fmt: skip


if __name__ == "__main__":
    main()
