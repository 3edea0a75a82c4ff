"""Request and response bodies of the web API (their field descriptions are the API docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# Fewer than 2**31 so that the seed means the same in every client language.
MAX_SEED = 2**31 - 1


class PieceIn(BaseModel):
    midi: str = Field(description="The MIDI file, base64-encoded.")
    name: str = Field(
        "piece.mid", max_length=200, description="File name, for messages only (never a path)."
    )


class SamplingIn(BaseModel):
    candidates: int = Field(4, ge=1, description="Alternatives to write, ranked by likelihood.")
    temperature: float = Field(1.0, gt=0.0, le=5.0, description="Softmax temperature.")
    top_p: float | None = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, ge=1, description="Keep only the k likeliest tokens.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Same seed, same candidates.")


class CompleteIn(PieceIn, SamplingIn):
    bars: int = Field(4, ge=1, description="Bars to add after the end of the piece.")


class InfillIn(PieceIn, SamplingIn):
    first_bar: int = Field(ge=1, description="First bar to rewrite (1-based).")
    last_bar: int = Field(ge=1, description="Last bar to rewrite (1-based, inclusive).")


class PieceView(BaseModel):
    """What the page draws and plays: bar lines and notes in beats and in seconds."""

    name: str
    bars: int = Field(description="Bars in the piece, as the model counts them.")
    bar_beats: list[float] = Field(description="Start of every bar and the end of the last.")
    bar_seconds: list[float] = Field(description="The same instants in seconds.")
    notes: list[list[float]] = Field(
        description="[onset beat, duration beats, pitch, velocity, onset s, duration s] per note."
    )


class CandidateOut(BaseModel):
    rank: int = Field(description="1 = the model's likeliest.")
    mean_loglik: float = Field(description="Mean log-probability per token, nats.")
    midi: str = Field(description="The whole piece with the new bars, MIDI base64.")
    new_midi: str = Field(description="The new bars alone, MIDI base64 (time 0 = first new bar).")
    sidecar: dict[str, Any] = Field(description="The same fields as `pianomuse complete`'s JSON.")
    view: PieceView = Field(description="The whole piece with the new bars, for drawing.")


class GenerationOut(BaseModel):
    kind: str = Field(description="continuation or infill.")
    first_new_bar: int = Field(description="1-based number of the first new bar.")
    new_bars: int
    new_from_beat: float = Field(description="Where the new music starts.")
    new_to_beat: float = Field(description="Where it ends (infill: where the kept music resumes).")
    seconds: float = Field(description="Time the model took, seconds.")
    candidates: list[CandidateOut]


class Limits(BaseModel):
    max_upload_bytes: int
    max_notes: int
    max_beats: int
    max_bars: int
    max_gap_bars: int
    max_candidates: int
    max_seconds: int
    queue: int


class StatusOut(BaseModel):
    model: str
    busy: bool = Field(description="A request is being generated now.")
    waiting: int = Field(description="Requests waiting behind it.")
    progress: float = Field(description="Share of the running request done, 0-1.")
    limits: Limits
