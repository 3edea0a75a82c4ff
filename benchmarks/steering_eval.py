"""Steering judged on held-out songs: key, density, register, arrange, beside the unsteered model.

    uv run python benchmarks/steering_eval.py PATH/TO/pop909 [--model M] [--songs 20]

Each song is cut after bar --context and continued by --new bars (sampling seed: the song's
index), unsteered and steered, beside its true continuation:

- key: the song's annotated key at the cut (key_audio.txt); share of new notes in its scale, and
  the bits per note the model spends on the new bars, teacher-forced after the same context;
- density: f x the context's notes per bar (its last 4 bars); share of new bars within 20 % of
  that, and their mean notes / target (unsteered and true: f = 1);
- register: the range C3-C6 for every part; share of new notes inside it;
- arrange (songs with a melody track): the accompaniment of the new bars written to the song's
  melody (2 bars after them known); share of candidates whose melody is the song's note for
  note, and the chord fit of the accompaniment to the song's chords.

A run the product fails is listed and left out. Songs: those `prepare` holds out for validation
(content hash, 10 %), or --split train. Needs a model with chords and parts (tokenizer v2).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianomuse.bundled import default_model
from pianomuse.copilot import Candidate, Copilot, Sampling
from pianomuse.copilot.prompts import context_window
from pianomuse.data.prepare import songs_in_split
from pianomuse.evaluation.form import _song
from pianomuse.evaluation.harmony import chord_fit, chord_spans
from pianomuse.harmony import note_number, scale_of
from pianomuse.steering import NO_STEERING, Steering
from pianomuse.tokenizer import Kind, Tokenizer, cut_score, load_score, notes_in_beats, seconds_at
from pianomuse.tokenizer.compose import keep_tracks
from pianomuse.tokenizer.remi2 import TRACK_OF_PART

FACTORS = (0.5, 1.0, 2.0)  # densities asked for, times the context's
LOW, HIGH = "C3", "C6"
AFTER = 2  # bars after an arranged gap that the model reads
MODES = {"maj": "major", "min": "minor"}  # key_audio.txt's modes
BASE, TRUE, ARRANGED = "model, no steering", "true continuation", "model, accompaniment written"
COLUMNS = {
    "key": ("in scale %", "bits/note"),
    "density": tuple(f"x{f:g} {c}" for f in FACTORS for c in ("within %", "ratio")),
    "register": (f"in {LOW}-{HIGH} %",),
    "arrange": ("melody kept %", "chord fit %"),
}
Notes = dict[str, np.ndarray]


class Tally:
    """Sums and counts per (measure, row, column), pooled over songs."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
        self.songs: dict[str, int] = defaultdict(int)
        self.failures: list[str] = []

    def add(self, measure: str, row: str, column: str, total: float, count: int = 1) -> None:
        cell = self.cells[measure, row, column]
        cell[0], cell[1] = cell[0] + float(total), cell[1] + int(count)

    def report(self) -> dict[str, Any]:
        """{measure: {"songs": n, "rows": {row: {column: mean, or None}}}}."""
        out: dict[str, Any] = {m: {"songs": self.songs[m], "rows": {}} for m in COLUMNS}
        for m, row, _ in list(self.cells):
            cells = {c: self.cells.get((m, row, c), (0, 0)) for c in COLUMNS[m]}
            out[m]["rows"][row] = {c: s / n if n else None for c, (s, n) in cells.items()}
        return out


def song_key(path: Path, score: Any, beat: float) -> str | None:
    """The song's annotated key at `beat` of its re-timed score, as "Gb major" (None: none)."""
    file = path.parent / "key_audio.txt"
    if not file.is_file():
        return None
    rows = [line.split() for line in file.read_text().splitlines() if line.strip()]
    # read_song keeps the file's seconds but moves time 0: the first note tells by how much.
    raw = load_score(path).to("second")
    first = min(t.notes.numpy()["time"].min() for t in raw.tracks if len(t.notes))
    at = seconds_at(score, np.array([notes_in_beats(score)["onset"].min(), beat]))
    k = np.searchsorted([float(r[0]) for r in rows], first + at[1] - at[0], side="right")
    tonic, _, mode = rows[max(int(k) - 1, 0)][2].partition(":")
    return f"{tonic} {MODES[mode]}" if mode in MODES else None


@torch.inference_mode()
def _bits(copilot: Copilot, ids: np.ndarray, bar: int, target: np.ndarray) -> tuple[float, int]:
    """Bits the model spends on the tokens `target` after the bars of `ids` before `bar` (as
    many as fit its window: form._teacher_forced_bits on token ids), and the notes they hold."""
    window, _ = context_window(copilot.tok.structure, ids, bar, copilot.max_context_tokens)
    device = next(copilot.model.parameters()).device
    seq = torch.as_tensor(np.concatenate([window, target]), device=device)[None]
    logits = copilot.model(seq)[0, len(window) - 1 : -1].float()
    nll = torch.nn.functional.cross_entropy(logits, seq[0, len(window) :], reduction="sum")
    return float(nll) / math.log(2), int((copilot.tok.structure.kinds(target) == Kind.PITCH).sum())


def _per_bar(onsets: np.ndarray, lines: np.ndarray) -> np.ndarray:
    return np.histogram(onsets, bins=lines)[0]


def _window(notes: Notes, a: float, b: float) -> Notes:
    """The notes starting in [a, b), onsets from a."""
    sel = (notes["onset"] >= a) & (notes["onset"] < b)
    return {k: v[sel] - (a if k == "onset" else 0) for k, v in notes.items()}


def _part(copilot: Copilot, score: Any, part: int) -> Notes:
    """Notes (beats) of the tracks of `score` that the tokenizer reads as `part`."""
    out, parts = score.copy(), copilot.tok.track_parts(score)
    out.tracks = [t for t, p in zip(score.tracks, parts, strict=True) if p == part]
    return notes_in_beats(out)


class Case:
    """One song cut after bar `context`: its unsteered continuation and its truth."""

    def __init__(self, copilot: Copilot, path: Path, song: dict, args: Any, seed: int):
        self.copilot, self.path, self.song, self.seed = copilot, path, song, seed
        self.context, self.new, self.k = args.context, args.new, args.candidates
        self.failures: list[str] = []
        lines, score = song["lines"], song["score"]
        self.c0, self.c1 = lines[self.context], lines[self.context + self.new]
        self.piece = copilot.read(cut_score(score, int(round(self.c0 * score.tpq))))
        self.truth = _window(song["notes"], self.c0, self.c1)
        self.truth_lines = lines[self.context : self.context + self.new + 1] - self.c0
        self.base = self.run()

    def attempt(self, what: str, call: Callable, *args: Any, **kw: Any) -> list[Candidate]:
        """The candidates of a generation; none where the product fails (recorded)."""
        try:
            sampling = Sampling(seed=self.seed)
            return call(*args, candidates=self.k, sampling=sampling, **kw).candidates
        except Exception as e:
            self.failures.append(f"{self.path.name} {what}: {type(e).__name__}: {e}")
            return []

    def run(self, steering: Steering = NO_STEERING) -> list[Candidate]:
        what, complete = str(steering.as_dict() or "unsteered"), self.copilot.complete
        return self.attempt(what, complete, self.piece, bars=self.new, steering=steering)

    def truth_bits(self) -> tuple[float, int]:
        score = self.song["score"]
        piece = self.copilot.read(cut_score(score, int(round(self.c1 * score.tpq))))
        start = self.copilot.tok.structure.bar_starts(piece.ids)[self.context]
        return _bits(self.copilot, piece.ids, self.context, piece.ids[start:])


def note_rows(
    case: Case, tally: Tally, measure: str, row: str, steering: Steering, inside: Callable
) -> None:
    """Share of new notes whose pitches are `inside` (and for the key, the model's bits on
    them), unsteered, steered and true."""
    column, bits = COLUMNS[measure][0], measure == "key"
    for name, candidates in ((BASE, case.base), (row, case.run(steering))):
        for c in candidates:
            pitch = notes_in_beats(c.new)["pitch"]
            tally.add(measure, name, column, inside(pitch).sum(), len(pitch))
            if bits:
                ids, bar = case.piece.ids, case.piece.n_bars
                tally.add(measure, name, "bits/note", *_bits(case.copilot, ids, bar, c.tokens))
    tally.add(measure, TRUE, column, inside(case.truth["pitch"]).sum(), len(case.truth["pitch"]))
    if bits:
        tally.add(measure, TRUE, "bits/note", *case.truth_bits())


def density_rows(case: Case, tally: Tally) -> bool:
    """Notes per bar against f x the context's; False: a silent context."""
    lines, first = case.song["lines"], max(case.context - 4, 0)
    density = _per_bar(case.song["notes"]["onset"], lines[first : case.context + 1]).mean()
    if density == 0:
        return False

    def add(row: str, f: float, counts: np.ndarray, target: float) -> None:
        near = np.abs(counts - target) <= 0.2 * target
        tally.add("density", row, f"x{f:g} within %", near.sum(), len(counts))
        tally.add("density", row, f"x{f:g} ratio", (counts / target).sum(), len(counts))

    for c in case.base:
        add(BASE, 1.0, _per_bar(notes_in_beats(c.new)["onset"], c.new_beats), density)
    for f in FACTORS:
        target = round(min(f * density, 200.0), 2)
        for c in case.run(Steering(density=str(target))):
            counts = _per_bar(notes_in_beats(c.new)["onset"], c.new_beats)
            add("model, density given", f, counts, target)
    add(TRUE, 1.0, _per_bar(case.truth["onset"], case.truth_lines), density)
    return True


def arrange_rows(case: Case, tally: Tally) -> bool:
    """The accompaniment of the new bars written to the song's melody; False: no parts."""
    cp, score, lines = case.copilot, case.song["score"], case.song["lines"]
    after = lines[min(case.context + case.new + AFTER, len(lines) - 1)]
    piece = cp.read(cut_score(score, int(round(after * score.tpq))))
    if not (cp.tok.structure.kinds(piece.ids) == Kind.PART).any():
        return False
    i, j = case.context + 1, case.context + case.new  # the gap, bars 1-based
    arranged = case.attempt("arrange", cp.infill, piece, i, j, write="accompaniment")
    a, b = piece.bar_ticks[[i - 1, j]] / piece.tpq
    spans, melody = chord_spans(case.song["chords"], a, b), _window(_part(cp, score, 0), a, b)

    def fit(row: str, notes: Notes) -> None:
        value = chord_fit({**notes, "onset": notes["onset"] + a}, spans)
        if value is not None:
            tally.add("arrange", row, "chord fit %", value)

    for c in case.base:
        fit(BASE, notes_in_beats(keep_tracks(c.new, {TRACK_OF_PART[1]})))
    for c in arranged:
        kept = _window(_part(cp, c.full, 0), a, b)  # the melody in the piece as written
        same = np.array_equal(kept["pitch"], melody["pitch"]) and np.allclose(
            kept["onset"], melody["onset"], rtol=0, atol=1e-3
        )
        tally.add("arrange", ARRANGED, "melody kept %", same)
        fit(ARRANGED, notes_in_beats(c.new))
    fit("true accompaniment", _window(_part(cp, score, 1), a, b))
    return True


def evaluate(case: Case, tally: Tally) -> None:
    key = song_key(case.path, case.song["score"], case.c0)
    if key is not None:
        scale = list(scale_of(key))
        in_key = Steering(key=key)
        note_rows(case, tally, "key", "model, key given", in_key, lambda p: np.isin(p % 12, scale))
    low, high = note_number(LOW), note_number(HIGH)
    row, ranged = f"model, range {LOW}-{HIGH}", Steering(range=f"{LOW}-{HIGH}")
    note_rows(case, tally, "register", row, ranged, lambda p: (p >= low) & (p <= high))
    tally.songs["key"] += key is not None
    tally.songs["density"] += density_rows(case, tally)
    tally.songs["register"] += 1
    tally.songs["arrange"] += arrange_rows(case, tally)
    tally.failures += case.failures


def show(tables: dict[str, Any]) -> None:
    for measure, table in tables.items():
        print(f"\n{measure} ({table['songs']} songs)")
        print(f"{'':<30}" + "".join(f"{c:>16}" for c in COLUMNS[measure]))
        for row, values in table["rows"].items():
            cells = [
                "-" if v is None else f"{100 * v:.1f}" if c.endswith("%") else f"{v:.3f}"
                for c, v in values.items()
            ]
            print(f"{row:<30}" + "".join(f"{x:>16}" for x in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--songs", type=int, default=20)
    ap.add_argument("--context", type=int, default=12)
    ap.add_argument("--new", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    model = args.model or default_model()
    t0 = time.perf_counter()
    copilot, reader, tally = Copilot(model), Tokenizer.latest(), Tally()
    songs = songs_in_split(args.data, args.split)[: args.songs]
    for i, path in enumerate(songs):
        song = _song(path, reader)
        if len(song["lines"]) - 1 >= args.context + args.new:
            evaluate(Case(copilot, path, song, args, seed=i), tally)
        print(f"\r{i + 1}/{len(songs)} songs", end="", flush=True)
    seconds, n = time.perf_counter() - t0, tally.songs["register"]
    print(
        f"\n{model.name}: {n} {args.split} songs, bars {args.context + 1}-"
        f"{args.context + args.new} after bars 1-{args.context}, {args.candidates} candidates, "
        f"{seconds:.0f} s"
    )
    tables = tally.report()
    show(tables)
    for failure in tally.failures:
        print(f"failed: {failure}")
    if args.json:
        report = {"model": model.name, "split": args.split, "songs": n, "seconds": seconds}
        report |= {"context": args.context, "new": args.new, "candidates": args.candidates}
        report |= {"tables": tables, "failures": tally.failures}
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
