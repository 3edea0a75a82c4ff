"""Request and response bodies of the web API (their field descriptions are the API docs)."""

from __future__ import annotations

from typing import Any, Literal

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


class SteeringIn(BaseModel):
    """What the new music keeps to (every field optional, each exact; see `pianomuse
    complete --help`)."""

    chords: str | None = Field(
        None, max_length=2000, description='A chord a bar, "C G Am F"; lengths in beats, "C:2 G:2".'
    )
    key: str | None = Field(None, max_length=40, description='"A minor", "D dorian", "Eb major"…')
    scale: str | None = Field(None, max_length=80, description='Pitch classes, "C,D,E,G,A".')
    chromatic: bool = Field(False, description="Let short notes outside the scale pass by.")
    range: str | None = Field(None, max_length=20, description='All notes within "C2-C6".')
    melody_range: str | None = Field(None, max_length=20, description="The melody's range.")
    accompaniment_range: str | None = Field(
        None, max_length=20, description="The accompaniment's range."
    )
    bass_range: str | None = Field(
        None, max_length=20, description="The bass line's range (the accompaniment's lowest)."
    )
    density: str | None = Field(
        None, max_length=20, description="Notes a bar, or sparser | as-context | busier."
    )


class CompleteIn(PieceIn, SamplingIn, SteeringIn):
    bars: int = Field(4, ge=1, description="Bars to add after the end of the piece.")


class InfillIn(PieceIn, SamplingIn, SteeringIn):
    first_bar: int = Field(ge=1, description="First bar to rewrite (1-based).")
    last_bar: int = Field(ge=1, description="Last bar to rewrite (1-based, inclusive).")


class ArrangeIn(SamplingIn, SteeringIn):
    midi: str | None = Field(
        None, description="The piece, MIDI base64 (its melody track is kept); none: from chords."
    )
    name: str = Field("piece.mid", max_length=200, description="File name, for messages only.")
    write: Literal["accompaniment", "melody"] = Field(
        "accompaniment", description="The part to write; the other is kept note for note."
    )
    first_bar: int | None = Field(None, ge=1, description="First bar to arrange (default 1).")
    last_bar: int | None = Field(None, ge=1, description="Last bar (default: the last).")
    bars: int | None = Field(
        None, ge=1, description="Without a piece: bars to write (default: the progression's)."
    )
    tempo: float = Field(120.0, description="Without a piece: beats a minute.")


class PieceView(BaseModel):
    """What the page draws and plays: bar lines and notes in beats and in seconds."""

    name: str
    bars: int = Field(description="Bars in the piece, as the model counts them.")
    bar_beats: list[float] = Field(description="Start of every bar and the end of the last.")
    bar_seconds: list[float] = Field(description="The same instants in seconds.")
    notes: list[list[float]] = Field(
        description="[onset beat, duration beats, pitch, velocity, onset s, duration s] per note."
    )
    chords: list[list[Any]] = Field(
        [], description="[beat, symbol] of each chord change (annotated, else recognised)."
    )


class CandidateOut(BaseModel):
    rank: int = Field(description="1 = the model's likeliest.")
    mean_loglik: float = Field(description="Mean log-probability per token, nats.")
    midi: str = Field(description="The whole piece with the new bars, MIDI base64.")
    new_midi: str = Field(description="The new bars alone, MIDI base64 (time 0 = first new bar).")
    sidecar: dict[str, Any] = Field(description="The same fields as `pianomuse complete`'s JSON.")
    view: PieceView = Field(description="The whole piece with the new bars, for drawing.")


class GenerationOut(BaseModel):
    kind: str = Field(description="continuation, infill, arrange or sketch.")
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
    max_live: int


class StatusOut(BaseModel):
    model: str
    busy: bool = Field(description="A request is being generated now.")
    waiting: int = Field(description="Requests waiting behind it.")
    progress: float = Field(description="Share of the running request done, 0-1.")
    limits: Limits


def problem_line(errors: list[dict]) -> str:
    """The first validation error as one line, "field: problem" (the request's "body" left
    out of the field's path)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    return f"{where}: {first['msg']}".lstrip(": ")
