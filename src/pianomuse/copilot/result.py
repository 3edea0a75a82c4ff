"""What a generation returns: ranked candidates, and where their new music lies in the piece."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pianomuse.generate.decode import DecodeStats
from pianomuse.generate.sampling import Sampling
from pianomuse.harmony import parse_label
from pianomuse.tokenizer import Piece, Structure, notes_in_beats
from pianomuse.tokenizer.align import CHORD_MARKER


@dataclass(frozen=True)
class Span:
    """Where new music goes in a piece, shared by continuations and infills: new bars from
    bar `first_bar` (0-based) on, starting at `start_tick` of the piece; an infill's new bars
    end at `end_tick`, where the kept music resumes."""

    kind: str  # "continuation", "infill", "arrange" (one part of a gap) or "sketch" (chords)
    first_bar: int  # 0-based index of the first new bar
    bars: int | None  # new bars per candidate (None: a token budget decided)
    start_tick: int  # where the new music starts, in the piece's ticks
    end_tick: int | None = None  # infill: where the kept music resumes
    write: int = -1  # arrange: the part written (0 melody, 1 accompaniment)


@dataclass
class Candidate:
    """One alternative, ranked by the model's mean log-likelihood of it."""

    rank: int  # 1 = most likely
    index: int  # order of generation (its place in the decoding batch)
    tokens: np.ndarray  # generated token ids
    loglik: float  # mean log p per token, nats
    new: Any  # symusic Score of the new bars alone, time 0 = the span's start
    new_beats: np.ndarray  # (bars + 1,) bar lines of the new bars, beats from the start
    full: Any  # symusic Score of the whole piece with the new music, as written
    full_midi: bytes  # the whole piece's MIDI file
    simplified: list[str] = field(default_factory=list)  # what a score writer simplified
    sound: Any = None  # the whole piece's samples, once a sound writer rendered them


@dataclass
class Generation:
    """Candidates plus everything needed to place, draw and reproduce them."""

    candidates: list[Candidate]
    piece: Piece  # the piece as given
    span: Span
    context: dict[str, Any]  # the prompt: bars (1-based), tokens, and for infills the gap
    sampling: Sampling
    stats: DecodeStats
    model_info: dict[str, Any] = field(default_factory=dict)
    steering: Any = None  # the `Steering` the new music kept to
    tokenizer: Any = None  # the `Tokenizer` the model read the piece with (for scores)

    def end_tick(self, c: Candidate) -> int:
        """Where the candidate's new music ends (its last bar line)."""
        if self.span.end_tick is not None:
            return self.span.end_tick
        return self.span.start_tick + int(round(c.new_beats[-1] * self.piece.tpq))

    def bar_ticks(self, c: Candidate) -> np.ndarray:
        """Every bar line of the piece with the candidate in it (and the end of the last)."""
        if self.span.end_tick is not None:  # an infill: the piece's own bars
            return self.piece.bar_ticks
        new = self.span.start_tick + np.round(c.new_beats * self.piece.tpq).astype(np.int64)
        return np.concatenate([self.piece.bar_ticks[: self.span.first_bar], new])

    def plan(self, c: Candidate) -> str | None:
        """The chords planned for the candidate (`--chords` syntax); None: none planned."""
        plans = self.context.get("plans")
        return plans[c.index % len(plans)] if plans else None

    def seconds_of_music(self) -> float:
        """Length of one candidate's new music in seconds, at the tempo at its start."""
        qpm = self.piece.qpm_at(self.span.start_tick)
        beats = max(c.new_beats[-1] for c in self.candidates) if self.candidates else 0.0
        return float(beats) * 60.0 / qpm

    def sidecar(self, c: Candidate) -> dict[str, Any]:
        """The JSON sidecar: the candidate, where it goes, and how it was made."""
        return {
            "rank": c.rank,
            "candidate_index": c.index,
            "mean_loglik": c.loglik,
            "tokens": len(c.tokens),
            "notes": int(c.new.note_num()),
            "bars": self.span.bars,
            "kind": self.span.kind,
            "first_new_bar": self.span.first_bar + 1,  # 1-based, as musicians count
            "seam_tick": self.span.start_tick,
            "end_tick": self.end_tick(c),
            "context": self.context,
            "sampling": asdict(self.sampling),
            "steering": self.steering.as_dict() if self.steering is not None else {},
            "plan": self.plan(c),
            "source_sha256": hashlib.sha256(self.piece.midi).hexdigest()[:16],
            "notes_per_bar": round(c.new.note_num() / max(len(c.new_beats) - 1, 1), 2),
            "chords": chords_of(c.new),
            "candidates": len(self.candidates),
            **({"score_simplified": c.simplified} if c.simplified else {}),
            **self.model_info,
        }


def new_bar_beats(st: Structure, tokens: np.ndarray) -> np.ndarray:
    """Bar lines of generated bars in beats from their start (what their TimeSig tokens
    say; empty tokens are no bars)."""
    return st.bar_lines(tokens) if len(tokens) else np.zeros(1)


def notes_outside(piece: Piece, start_tick: int, end_tick: int) -> dict[str, np.ndarray]:
    """The piece's notes (beats) that do not start inside [start_tick, end_tick)."""
    n = notes_in_beats(piece.source)
    tpq = piece.tpq
    keep = (n["onset"] < start_tick / tpq) | (n["onset"] >= end_tick / tpq)
    return {k: v[keep] for k, v in n.items()}


def chords_of(score: Any) -> list[list[Any]]:
    """[beat, symbol] of the chord changes of the new music (version 2 writes them)."""
    return [
        [round(m.time / score.tpq, 4), parse_label(m.text.removeprefix(CHORD_MARKER)).symbol()]
        for m in score.markers
        if m.text.startswith(CHORD_MARKER)
    ]
