"""A generation as a score: the piece as the model read it (on the tokenizer's grid, so that a
performed file engraves as the music it stands for) with a candidate's new bars in it, as
`pianomuse.notation.ScoreNotes` for the score writers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pianomuse.copilot.result import Candidate, Generation, chords_of
from pianomuse.notation import ScoreNotes
from pianomuse.tokenizer import Piece, Tokenizer, melody_flags, notes_in_beats

SEAM_MARK = "new bars"  # the rehearsal mark at the start of the new music


def as_read(tok: Tokenizer, piece: Piece) -> tuple[dict[str, np.ndarray], list[list[Any]]]:
    """The piece's notes (with a `melody` flag) and chord changes ([beat, symbol]) as the
    model reads them, in the piece's own beats: the tokens' bar lines are mapped onto the
    file's, so a bar of the tokens falls on the same bar of the file."""
    n, chords = _decoded(tok, piece.ids)
    read = tok.structure.bar_lines(piece.ids)  # the tokens' beats
    own = piece.bar_ticks / piece.tpq  # the same bar lines in the file's beats
    start = np.interp(n["onset"], read, own)
    n["duration"] = np.interp(n["onset"] + n["duration"], read, own) - start
    n["onset"] = start
    return n, [[round(float(np.interp(b, read, own)), 4), s] for b, s in chords]


def _decoded(tok: Tokenizer, ids: np.ndarray) -> tuple[dict[str, np.ndarray], list[list[Any]]]:
    """The notes (with a `melody` flag) and chord changes of tokens, in the tokens' beats."""
    decoded = tok.decode(ids)
    n = notes_in_beats(decoded) | {"melody": melody_flags(decoded)}
    return n, chords_of(decoded) if tok.has_chords else []


def read_score(
    tok: Tokenizer, score: Any, *, bars: int | None = None, key: str | None = None, title: str = ""
) -> ScoreNotes:
    """A MIDI score (symusic) as the tokenizer reads it: its notes on the grid, its parts and
    chords, its first `bars` bars (None: all); the tempo is the file's first."""
    ids = tok.encode(score)
    lines = tok.structure.bar_lines(ids)
    lines = lines[: bars + 1] if bars is not None else lines
    n, chords = _decoded(tok, ids)
    keep = n["onset"] < lines[-1]
    notes = {k: v[keep] for k, v in n.items()}
    notes["duration"] = np.minimum(notes["duration"], lines[-1] - notes["onset"])
    chords = [ch for ch in chords if ch[0] < lines[-1]]
    qpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    return ScoreNotes(
        onset=notes["onset"], duration=notes["duration"], pitch=notes["pitch"],
        melody=notes["melody"].astype(bool), metres=metres(lines), end=float(lines[-1]),
        qpm=qpm, grid=tok.settings.positions_per_beat, key=key,
        chords=[(float(b), str(sym)) for b, sym in chords], title=title,
    )  # fmt: skip


def whole_score(g: Generation, c: Candidate) -> ScoreNotes:
    """The whole piece with the candidate's new bars, the seam marked."""
    if g.tokenizer is None:
        raise ValueError("this generation has no tokenizer to read its piece with")
    tpq = g.piece.tpq
    start, end = g.span.start_tick / tpq, g.end_tick(c) / tpq
    kept, chords = as_read(g.tokenizer, g.piece)
    outside = (kept["onset"] < start) | (kept["onset"] >= end)
    new = _with_melody(c.new)
    notes = {k: np.concatenate([kept[k][outside], new[k] + (start if k == "onset" else 0)])
             for k in ("onset", "duration", "pitch", "melody")}  # fmt: skip
    new_chords = [[b + start, s] for b, s in chords_of(c.new)]
    chords = [ch for ch in chords if not start <= ch[0] < end] + new_chords
    marks = [(start, SEAM_MARK)] if start > 0 else []
    return _score(g, notes, g.bar_ticks(c) / tpq, sorted(chords), marks)


def new_score(g: Generation, c: Candidate) -> ScoreNotes:
    """The candidate's new bars alone."""
    return _score(g, _with_melody(c.new), c.new_beats, chords_of(c.new), [])


def _with_melody(score: Any) -> dict[str, np.ndarray]:
    n = notes_in_beats(score)
    n["melody"] = melody_flags(score)
    return n


def _score(
    g: Generation, notes: dict, bar_lines: np.ndarray, chords: list, marks: list
) -> ScoreNotes:
    steering = g.steering
    return ScoreNotes(
        onset=notes["onset"],
        duration=notes["duration"],
        pitch=notes["pitch"],
        melody=notes["melody"].astype(bool),
        metres=metres(bar_lines),
        end=float(bar_lines[-1]),
        qpm=g.piece.qpm_at(g.span.start_tick),
        grid=g.tokenizer.settings.positions_per_beat if g.tokenizer is not None else 12,
        key=getattr(steering, "key", None),
        chords=[(float(b), str(s)) for b, s in chords],
        marks=marks,
        title=Path(g.piece.name).name if g.piece.name else "",
    )


def metres(bar_lines: np.ndarray) -> list[tuple[float, int, int]]:
    """(beat, numerator, denominator) wherever the bar length changes: whole beats over 4,
    half beats over 8, else sixteenths."""
    out: list[tuple[float, int, int]] = []
    for at, length in zip(bar_lines[:-1], np.diff(bar_lines), strict=True):
        frac = Fraction(float(length)).limit_denominator(16)
        den = max(4, frac.denominator * 4)
        metre = (int(frac * den / 4), den)
        if not out or out[-1][1:] != metre:
            out.append((float(at), *metre))
    return out or [(0.0, 4, 4)]
