"""From the copilot's objects to the API's bodies (bars, notes and MIDI as JSON)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from pianomuse.copilot import WRITERS, Generation
from pianomuse.copilot.result import chords_of
from pianomuse.serve.schemas import CandidateOut, GenerationOut, PieceView
from pianomuse.tokenizer import notes_in_beats, seconds_at


def piece_view(
    score: Any, bar_ticks: np.ndarray, name: str, chords: list[list[Any]] | None = None
) -> PieceView:
    """Bar lines (every bar and the end of the last, as the model counts them), the notes
    of every track of `score`, and its chord changes ([beat, symbol])."""
    tpq = score.tpq
    n_bars = len(bar_ticks) - 1
    bar_beats = np.asarray(bar_ticks) / tpq
    n = notes_in_beats(score)
    onset_s = seconds_at(score, n["onset"])
    dur_s = seconds_at(score, n["onset"] + n["duration"]) - onset_s
    rows = np.stack(
        [n["onset"], n["duration"], n["pitch"], n["velocity"], onset_s, dur_s], axis=1
    )  # [notes, 6]
    return PieceView(
        name=name,
        bars=n_bars,
        bar_beats=np.round(bar_beats, 4).tolist(),
        bar_seconds=np.round(seconds_at(score, bar_beats), 4).tolist(),
        notes=np.round(rows, 4).tolist(),
        chords=chords or [],
    )


def generation_out(
    result: Generation, seconds: float, chords: list[list[Any]] | None = None
) -> GenerationOut:
    """Every candidate with its MIDI (base64, from the same writers as the command line),
    sidecar and a view of the whole new piece; `chords` are the piece's own ([beat, symbol]),
    kept outside the new music in each view."""
    tpq = result.piece.tpq
    span = result.span
    best = result.candidates[0]
    start = span.start_tick / tpq

    def with_new(c: Any) -> list[list[Any]]:
        end = result.end_tick(c) / tpq
        kept = [x for x in chords or [] if not start <= x[0] < end]
        new = [[round(start + b, 4), sym] for b, sym in chords_of(c.new)]
        return sorted(kept + new, key=lambda x: x[0])

    return GenerationOut(
        kind=span.kind,
        first_new_bar=span.first_bar + 1,
        new_bars=span.bars or 0,
        new_from_beat=span.start_tick / tpq,
        new_to_beat=result.end_tick(best) / tpq,
        seconds=round(seconds, 3),
        candidates=[
            CandidateOut(
                rank=c.rank,
                mean_loglik=c.loglik,
                midi=b64(WRITERS["whole"].render(result, c)),
                new_midi=b64(WRITERS["new"].render(result, c)),
                sidecar=result.sidecar(c),
                view=piece_view(c.full, result.bar_ticks(c), result.piece.name, with_new(c)),
            )
            for c in result.candidates
        ],
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
