"""Continuations judged as music, beside reference rows.

For each song of at least `context + new` bars: the first `context` bars are the context, the
next `new` bars the truth. Four rows are scored against the song's chords in the new bars
(its annotations where they exist, else the recogniser's reading of the true notes):

- the true continuation;
- "repeat the last bars": the context's last `new` bars played again;
- the model: `candidates` continuations from the copilot (chords planned first, where the
  model has chords: its default);
- "another song": the next song's bars at the same place (its own harmony, not this one's).

Columns: chord fit and bass fit (`evaluation.harmony`), material reuse (how much each new bar
resembles the best-matching bar of the context), metre kept; and for the model, the true
continuation's bits per note and per second of music, teacher-forced, so that models with
different tokenizers compare on the same notes. A model that writes chords and parts
(tokenizer version 2) gets three more rows: its continuation written freely (no plan), written
to the true chords, and an
accompaniment written to the true melody of the new bars (the infill of that part alone, the
4 bars after it known). The same table for infills: the new bars are
a gap between the context and the `SUFFIX` bars after it ("true continuation" is then the
true gap).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianomuse.copilot import Copilot, Sampling
from pianomuse.copilot.prompts import context_window
from pianomuse.data.prepare import read_song
from pianomuse.evaluation.harmony import (
    bar_sets,
    bars_looped,
    bass_fit,
    chord_fit,
    chord_spans,
    material_reuse,
    metre_kept,
)
from pianomuse.harmony import parse_label
from pianomuse.steering import NO_STEERING, Steering
from pianomuse.tokenizer import Kind, Tokenizer, cut_score, notes_in_beats, seconds_at
from pianomuse.tokenizer.align import CHORD_MARKER

ROWS = ("true continuation", "repeat the last bars", "model", "another song")
# Rows of a model that reads and writes chords and parts (tokenizer version 2).
STEERED = ("model, no plan", "model, true chords given", "accompaniment to the true melody")
SUFFIX = 4  # bars after an infill's gap that the model reads
COLUMNS = (
    "chord_fit",
    "bass_fit",
    "material_reuse",
    "bars_looped",
    "metre_kept",
    "texture_broken",
)
RECENT_BARS = 4  # the context's last bars whose texture the new bars should keep
EXTERNAL = "chord_accuracy"  # the column an outside measure fills (`form_report(external=)`)


def _shifted(notes: dict[str, np.ndarray], sel: np.ndarray, by: float) -> dict[str, np.ndarray]:
    out = {k: v[sel] for k, v in notes.items()}
    out["onset"] = out["onset"] + by
    return out


def _song(path: Path, reader: Tokenizer) -> dict[str, Any]:
    """A song's notes (beats), bar lines, chords and seconds, as the reader's tokens see
    them (chords: the annotations it carries, else its recogniser)."""
    score = read_song(path)
    ids = reader.encode(score)
    st = reader.structure
    decoded = reader.decode(ids)
    chords = [
        (m.time / decoded.tpq, parse_label(m.text.removeprefix(CHORD_MARKER)))
        for m in decoded.markers
        if m.text.startswith(CHORD_MARKER)
    ]
    return {
        "score": score,
        "notes": notes_in_beats(score),
        "lines": st.bar_lines(ids),
        "chords": chords,
    }


def progression(changes: list[tuple[float, Any]], start: float, end: float) -> str:
    """The chords sounding over [start, end) as a progression with lengths ("C:2 G:2 ...")."""
    times = [t for t, _ in changes]
    first = max(int(np.searchsorted(times, start, side="right")) - 1, 0)
    items = []
    for i in range(first, len(changes)):
        a = max(changes[i][0], start)
        b = min(changes[i + 1][0] if i + 1 < len(changes) else end, end)
        if a < b:
            items.append(f"{changes[i][1].symbol()}:{b - a:g}")
    return " ".join(items)


def texture_broken(notes: dict, bars: int, recent: dict, recent_bars: int) -> float:
    """1 where the new bars leave the texture of the context's last bars (`recent`): their
    bass register (10th-percentile pitch) moves more than a fifth, or their notes per bar are
    off by more than 2x; else 0."""
    if len(notes["pitch"]) == 0 or len(recent["pitch"]) == 0:
        return float(len(notes["pitch"]) != len(recent["pitch"]))
    moved = abs(np.percentile(notes["pitch"], 10) - np.percentile(recent["pitch"], 10)) > 7
    ratio = (len(notes["pitch"]) / bars) / (len(recent["pitch"]) / recent_bars)
    return float(moved or not 0.5 <= ratio <= 2.0)


def _scores(notes, spans, new_lines, context_sets, context_lengths) -> dict[str, float | None]:
    return {
        "chord_fit": chord_fit(notes, spans),
        "bass_fit": bass_fit(notes, spans),
        "material_reuse": material_reuse(bar_sets(notes, new_lines), context_sets),
        "bars_looped": bars_looped(bar_sets(notes, new_lines)),
        "metre_kept": metre_kept(np.diff(new_lines).tolist(), context_lengths),
    }


def form_report(
    copilot: Copilot,
    songs: list[Path],
    *,
    context: int = 12,
    new: int = 4,
    candidates: int = 2,
    seed: int = 0,
    infill: bool = False,
    progress: Callable[[int, int], None] | None = None,
    external: Callable[[dict, dict, float], float | None] | None = None,
) -> dict[str, Any]:
    """The table of the module docstring, as {row: {column: mean}} plus the model's bits.
    With `infill`, the new bars are a gap the model fills knowing the `SUFFIX` bars after it
    (and its bits are not measured). `external(new notes, true notes, first new beat)` adds
    a column of a measure from outside the project (`EXTERNAL`)."""
    reader = Tokenizer.latest()
    loaded = []
    for path in songs:
        song = _song(path, reader)
        if len(song["lines"]) - 1 >= context + new + (SUFFIX if infill else 0):
            loaded.append(song)
    steerable = copilot.tok.has_chords
    rows: dict[str, list[dict[str, float | None]]] = {
        r: [] for r in ROWS + (() if not steerable else STEERED[:1] if infill else STEERED)
    }
    bits, notes_scored, seconds = 0.0, 0, 0.0
    for i, song in enumerate(loaded):
        case = _Case(song, context, new, external)
        other = loaded[(i + 1) % len(loaded)] if len(loaded) > 1 else None
        for row, notes in _reference_rows(case, other).items():
            rows[row].append(case.score(notes))
        sampling = Sampling(seed=seed + i)
        for row, got in _model_rows(copilot, case, candidates, sampling, infill, steerable):
            rows[row] += got
        if not infill:
            c0, c1 = case.new_lines[0], case.new_lines[-1]
            upto = cut_score(song["score"], int(round(c1 * case.tpq)))
            bits += _teacher_forced_bits(copilot, upto, context)
            notes_scored += int(case.truth.sum())
            seconds += float(np.diff(seconds_at(song["score"], np.array([c0, c1])))[0])
        if progress is not None:
            progress(i + 1, len(loaded))

    def mean(values: list[dict[str, float | None]]) -> dict[str, float | None]:
        out = {}
        for col in COLUMNS + ((EXTERNAL,) if external is not None else ()):
            xs = [v[col] for v in values if v[col] is not None]
            out[col] = float(np.mean(xs)) if xs else None
        return out

    return {
        "kind": "infill" if infill else "continuation",
        "songs": len(loaded),
        "context_bars": context,
        "new_bars": new,
        "candidates": candidates,
        "rows": {r: mean(v) for r, v in rows.items()},
        "bits_per_note": None if infill else bits / max(notes_scored, 1),
        "bits_per_second": None if infill else bits / max(seconds, 1e-9),
    }


class _Case:
    """One song cut for the table: its notes, the new bars' lines and chords, and the
    context's bars that the new music is compared with."""

    def __init__(self, song: dict[str, Any], context: int, new: int, external: Any = None):
        self.song, self.context, self.new, self.external = song, context, new, external
        lines, notes = song["lines"], song["notes"]
        self.tpq = song["score"].tpq
        self.new_lines = lines[context : context + new + 1]
        c0, c1 = self.new_lines[0], self.new_lines[-1]
        self.spans = chord_spans(song["chords"], c0, c1)
        before = notes["onset"] < c0
        self.context_sets = bar_sets(_shifted(notes, before, 0.0), lines[: context + 1])
        self.lengths = np.diff(lines[: context + 1]).tolist()
        self.truth = (notes["onset"] >= c0) & (notes["onset"] < c1)
        recent = (notes["onset"] >= lines[max(context - RECENT_BARS, 0)]) & before
        self.recent = _shifted(notes, recent, 0.0)

    def score(self, notes: dict[str, np.ndarray], lines: np.ndarray | None = None) -> dict:
        lines = self.new_lines if lines is None else lines
        out = _scores(notes, self.spans, lines, self.context_sets, self.lengths)
        out["texture_broken"] = texture_broken(notes, len(lines) - 1, self.recent, RECENT_BARS)
        if self.external is not None:  # a measure from outside, against the true bars
            truth = _shifted(self.song["notes"], self.truth, 0.0)
            out[EXTERNAL] = self.external(notes, truth, float(self.new_lines[0]))
        return out

    def placed(self, generated: Any) -> dict[str, np.ndarray]:
        """A candidate's new notes, in the song's beats."""
        gen = notes_in_beats(generated)
        gen["onset"] = gen["onset"] + self.new_lines[0]
        return gen


def _reference_rows(case: _Case, other: dict[str, Any] | None) -> dict[str, dict[str, np.ndarray]]:
    """The new bars of the reference rows: the truth, the last bars again, another song
    (none when there is no other song)."""
    notes, lines, c0 = case.song["notes"], case.song["lines"], case.new_lines[0]
    r0 = lines[case.context - case.new]
    repeat = (notes["onset"] >= r0) & (notes["onset"] < c0)
    rows = {
        "true continuation": _shifted(notes, case.truth, 0.0),
        "repeat the last bars": _shifted(notes, repeat, c0 - r0),
    }
    if other is not None:
        o0, o1 = other["lines"][case.context], other["lines"][case.context + case.new]
        on = other["notes"]["onset"]
        rows["another song"] = _shifted(other["notes"], (on >= o0) & (on < o1), c0 - o0)
    return rows


def _model_rows(
    copilot: Copilot,
    case: _Case,
    candidates: int,
    sampling: Sampling,
    infill: bool,
    steerable: bool,
) -> list[tuple[str, list[dict]]]:
    """The model's rows for one song: free, and where it can be steered, given the true
    chords and writing the accompaniment to the true melody."""
    score, tpq, context, new = case.song["score"], case.tpq, case.context, case.new
    c0, c1 = case.new_lines[0], case.new_lines[-1]
    kw = {"candidates": candidates, "sampling": sampling}
    if infill:
        end = int(round(case.song["lines"][context + new + SUFFIX] * tpq))
        gap = cut_score(score, end)

        def write(steering: Steering = NO_STEERING) -> Any:
            return copilot.infill(gap, context + 1, context + new, steering=steering, **kw)
    else:
        cut = cut_score(score, int(round(c0 * tpq)))

        def write(steering: Steering = NO_STEERING) -> Any:
            return copilot.complete(cut, bars=new, steering=steering, **kw)

    out = []
    for row, steering in (("model", NO_STEERING), ("model, no plan", Steering(plan="off"))):
        if row == "model" or steerable:
            got = write(steering).candidates
            out.append((row, [case.score(case.placed(c.new), c0 + c.new_beats) for c in got]))
    if not steerable or infill:
        return out
    given = Steering(chords=progression(case.song["chords"], c0, c1))
    steered = copilot.complete(cut, bars=new, steering=given, **kw)
    out.append(
        (
            "model, true chords given",
            [case.score(case.placed(c.new), c0 + c.new_beats) for c in steered.candidates],
        )
    )
    after = case.song["lines"][min(context + new + SUFFIX, len(case.song["lines"]) - 1)]
    piece = copilot.read(cut_score(score, int(round(after * tpq))))
    if (copilot.tok.structure.kinds(piece.ids) == Kind.PART).any():
        arranged = copilot.infill(piece, context + 1, context + new, write="accompaniment", **kw)
        out.append(
            (
                "accompaniment to the true melody",
                [case.score(case.placed(c.new)) for c in arranged.candidates],
            )
        )
    return out


@torch.inference_mode()
def _teacher_forced_bits(copilot: Copilot, piece_score: Any, context: int) -> float:
    """Bits the model spends on bars context.. of `piece_score`, after the bars before them
    (as many as fit its window), in its own tokens."""
    piece = copilot.read(piece_score)
    st = copilot.tok.structure
    starts = st.bar_starts(piece.ids)
    window, _ = context_window(st, piece.ids, context, copilot.max_context_tokens)
    target = piece.ids[starts[context] :]
    device = next(copilot.model.parameters()).device
    ids = torch.as_tensor(np.concatenate([window, target]), device=device)[None]
    logits = copilot.model(ids)[0, len(window) - 1 : -1].float()  # predicts the target
    nll = torch.nn.functional.cross_entropy(logits, ids[0, len(window) :], reduction="sum")
    return float(nll) / math.log(2)
