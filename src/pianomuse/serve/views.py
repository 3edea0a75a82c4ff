"""From the copilot's objects to the API's bodies (bars, notes and MIDI as JSON)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from pianomuse.copilot import Completion
from pianomuse.serve.schemas import CandidateOut, GenerationOut, PieceView
from pianomuse.tokenizer import midi_bytes, notes_in_beats, seconds_at
from pianomuse.tokenizer.compose import bar_tick, bar_ticks_upto


def piece_view(score: Any, n_bars: int, name: str) -> PieceView:
    """Bar lines (bars 1..n_bars and the end of the last) and notes of a piano part."""
    tpq = score.tpq
    bar_beats = bar_ticks_upto(score, n_bars + 1) / tpq
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
    )


def generation_out(result: Completion, name: str, seconds: float) -> GenerationOut:
    """Every candidate with its MIDI (base64), sidecar and a view of the whole new piece."""
    tpq = result.piece.tpq
    # An infill keeps the piece's bars; a continuation adds its own after them.
    added = (result.bars or 0) if result.kind == "continuation" else 0
    n_bars_out = result.piece_bars + added
    end_tick = result.gap_end_tick or bar_tick(result.piece, result.seam_bar + (result.bars or 0))
    return GenerationOut(
        kind=result.kind,
        first_new_bar=result.seam_bar + 1,
        new_bars=result.bars or 0,
        new_from_beat=result.seam_tick / tpq,
        new_to_beat=end_tick / tpq,
        seconds=round(seconds, 3),
        candidates=[
            CandidateOut(
                rank=c.rank,
                mean_loglik=c.loglik,
                midi=b64(midi_bytes(c.full)),
                new_midi=b64(midi_bytes(c.continuation)),
                sidecar=result.sidecar(c),
                view=piece_view(c.full, n_bars_out, name),
            )
            for c in result.candidates
        ],
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
