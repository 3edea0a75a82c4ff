"""Request and response bodies of the web API (their field descriptions are the API docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from pianomuse.audio import FORMATS
from pianomuse.generate.sampling import Sampling
from pianomuse.limits import MAX_SEED, MAX_TEMPERATURE
from pianomuse.steering import Steering


class PieceIn(BaseModel):
    midi: str = Field(description="The MIDI file, base64-encoded.")
    name: str = Field(
        "piece.mid", max_length=200, description="File name, for messages only (never a path)."
    )


class DrawIn(BaseModel):
    """How tokens are drawn (`pianomuse.generate.sampling.Sampling`, which checks them)."""

    temperature: float = Field(
        1.0, ge=0.0, le=MAX_TEMPERATURE, description="Softmax temperature (0 = greedy)."
    )
    top_p: float | None = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, ge=1, description="Keep only the k likeliest tokens.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Same seed, same candidates.")

    def sampling(self) -> Sampling:
        return Sampling(**self.model_dump(include=set(DrawIn.model_fields)))


class SamplingIn(DrawIn):
    candidates: int = Field(4, ge=1, description="Alternatives to write, ranked by likelihood.")


def _steering_fields() -> type[BaseModel]:
    """The JSON fields of `Steering`'s table of controls (see `pianomuse complete --help`)."""
    fields: dict[str, Any] = {}
    for name, kind, default, c in Steering.controls():
        limits = {"max_length": c.max_length, "ge": c.low, "le": c.high}
        fields[name] = (kind, Field(default, description=c.help, **limits))
    doc = "What the new music keeps to (every field optional, each exact)."
    return create_model("SteeringIn", __doc__=doc, **fields)


SteeringIn = _steering_fields()


class ScoreIn(PieceIn):
    key: str | None = Field(
        None, max_length=40, description='Key signature ("E minor"); none: found from the notes.'
    )


class AudioIn(PieceIn):
    format: Literal[tuple(FORMATS)] = Field(  # type: ignore[valid-type]
        "mp3", description="The sound file's format."
    )


class ScoreOut(BaseModel):
    musicxml: str = Field(description="The score as MusicXML 4.0, base64-encoded.")
    svg: str = Field(description="The score drawn (SVG), all systems on one page.")
    simplified: list[str] = Field(description="What had to be simplified to lay it out.")


class InStyleIn(BaseModel):
    style: str | None = Field(
        None, max_length=64, description="Write in a style uploaded to /api/style (its id)."
    )


class StyleIn(BaseModel):
    data: str = Field(description="The style file (`pianomuse tune`), base64-encoded.")
    name: str = Field(
        "style.safetensors", max_length=200, description="File name, for messages only."
    )


class StyleOut(BaseModel):
    id: str = Field(description="What requests send as `style` to write in it.")
    name: str
    method: str = Field(description="What the style changes: lora, head or state (README).")
    pieces: int | None = Field(description="Pieces it was tuned on.")
    bits_before: float | None = Field(description="Held-out bits per note without it.")
    bits_after: float | None = Field(description="Held-out bits per note with it.")


class CompleteIn(PieceIn, SamplingIn, SteeringIn, InStyleIn):
    bars: int = Field(4, ge=1, description="Bars to add after the end of the piece.")


class InfillIn(PieceIn, SamplingIn, SteeringIn, InStyleIn):
    first_bar: int = Field(ge=1, description="First bar to rewrite (1-based).")
    last_bar: int = Field(ge=1, description="Last bar to rewrite (1-based, inclusive).")


class ArrangeIn(SamplingIn, SteeringIn, InStyleIn):
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
