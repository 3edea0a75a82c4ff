"""The JSON API's routes. Each reads what the app serves (`Served`) through a dependency, so
the routes are plain module functions, not closures of the app."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from pianomuse.copilot import Copilot, Generation
from pianomuse.errors import UserError
from pianomuse.generate.sampling import Sampling
from pianomuse.harmony import parse_progression
from pianomuse.serve.gate import Gate
from pianomuse.serve.schemas import (
    ArrangeIn,
    AudioIn,
    CompleteIn,
    GenerationOut,
    InfillIn,
    Limits,
    PieceIn,
    PieceView,
    SamplingIn,
    ScoreIn,
    ScoreOut,
    StatusOut,
    StyleIn,
    StyleOut,
)
from pianomuse.serve.styles import StyleShelf
from pianomuse.serve.views import b64, generation_out, piece_view
from pianomuse.steering import Steering
from pianomuse.tokenizer import Piece
from pianomuse.tokenizer.midi_io import parse_midi

if TYPE_CHECKING:
    from pianomuse.serve.app import ServeLimits


def safe_name(name: str, default: str) -> str:
    """An uploaded file's name as messages show it: its last part, plain characters only."""
    return re.sub(r"[^\w.\- ]", "_", Path(name.replace("\\", "/")).name)[:80] or default


@dataclass(frozen=True)
class Served:
    """What the app serves: the shared copilot, the limits of a request, the gates
    generation (`gate`) and reading an upload (`reading`) go through, and the styles
    uploaded."""

    copilot: Copilot
    limits: ServeLimits
    gate: Gate
    reading: Gate
    styles: StyleShelf

    def read_piece(self, body: PieceIn, write: str | None = None) -> Piece:
        """The uploaded piece, read by the model's tokenizer (to `write` one part: see
        `Copilot.read`); every problem is a one-line UserError."""
        name, data, _ = self.checked_midi(body)
        return self.copilot.read(data, name=name, write=write)

    def checked_midi(self, body: PieceIn) -> tuple[str, bytes, Any]:
        """The uploaded MIDI file's safe name, bytes and parsed score, checked against this
        server's limits (not yet tokenized); every problem is a one-line UserError."""
        name = safe_name(body.name, "piece")
        try:
            data = base64.b64decode(body.midi, validate=True)
        except (binascii.Error, ValueError):
            raise UserError(f"{name}: the upload is not valid base64") from None
        most = self.limits.max_upload_bytes
        if len(data) > most:
            raise UserError(
                f"{name}: {len(data) / 1e6:.1f} MB is more than the {most / 1e6:.1f} MB "
                "this server accepts"
            )
        # Every event counts: a few far-apart events would make thousands of empty bars.
        score = parse_midi(data, name=name, max_beats=self.limits.max_beats)
        n = score.note_num()
        if n > self.limits.max_notes:
            raise UserError(f"{name}: {n} notes is more than the {self.limits.max_notes} allowed")
        return name, data, score

    def sampling(self, body: SamplingIn) -> Sampling:
        """The sampling settings of a request, built once here and passed whole."""
        if body.candidates > self.limits.max_candidates:
            raise UserError(f"candidates: at most {self.limits.max_candidates} per request")
        return body.sampling()

    def check_gap(self, first: int, last: int) -> None:
        if last < first:
            raise UserError("last_bar: must not come before first_bar")
        if last - first + 1 > self.limits.max_gap_bars:
            raise UserError(f"a gap may be at most {self.limits.max_gap_bars} bars here")

    async def generate(self, request: Request, make: Callable[[Any], Generation]) -> GenerationOut:
        """Run `make(progress)` through the generation gate; its answer, timed."""

        def work(progress: Any) -> GenerationOut:
            t0 = time.perf_counter()
            result = make(progress)
            seconds = time.perf_counter() - t0
            return generation_out(result, seconds, self.copilot.chords(result.piece))

        return await self.gate.run(work, request.is_disconnected)

    async def upload(self, request: Request, body: PieceIn, write: str | None = None) -> Piece:
        """`read_piece` through the reading gate."""
        return await self.reading.run(
            lambda _: self.read_piece(body, write), request.is_disconnected
        )


def _served(request: Request) -> Served:
    return request.app.state.served


Serving = Annotated[Served, Depends(_served)]
api = APIRouter()


@api.get("/api/status")
async def status(s: Serving) -> StatusOut:
    """The model, whether it is busy, and the limits of a request."""
    return StatusOut(
        model=str(s.copilot.model_info.get("model", "model")),
        busy=s.gate.busy,
        waiting=s.gate.waiting,
        progress=s.gate.progress,
        limits=Limits(**asdict(s.limits)),
    )


@api.post("/api/piece")
async def piece(body: PieceIn, request: Request, s: Serving) -> PieceView:
    """Bars and notes of an uploaded MIDI file (no model involved)."""

    def work(_: Any) -> PieceView:
        p = s.read_piece(body)
        return piece_view(p.source, p.bar_ticks, p.name, s.copilot.chords(p))

    return await s.reading.run(work, request.is_disconnected)


@api.post("/api/complete")
async def complete(body: CompleteIn, request: Request, s: Serving) -> GenerationOut:
    """Continue the piece by `bars` bars, `candidates` alternatives ranked by likelihood."""
    settings, steering = s.sampling(body), Steering.from_fields(body)
    if body.bars > s.limits.max_bars:
        raise UserError(f"bars: at most {s.limits.max_bars} per request")
    cp = s.styles.copilot(body.style)
    p = await s.upload(request, body)
    return await s.generate(
        request,
        lambda progress: cp.complete(
            p,
            bars=body.bars,
            candidates=body.candidates,
            sampling=settings,
            steering=steering,
            progress=progress,
        ),
    )


@api.post("/api/infill")
async def infill(body: InfillIn, request: Request, s: Serving) -> GenerationOut:
    """Rewrite bars first_bar..last_bar so that they lead into the music after them."""
    settings, steering = s.sampling(body), Steering.from_fields(body)
    s.check_gap(body.first_bar, body.last_bar)
    cp = s.styles.copilot(body.style)
    p = await s.upload(request, body)
    return await s.generate(
        request,
        lambda progress: cp.infill(
            p,
            body.first_bar,
            body.last_bar,
            candidates=body.candidates,
            sampling=settings,
            steering=steering,
            progress=progress,
        ),
    )


@api.post("/api/arrange")
async def arrange(body: ArrangeIn, request: Request, s: Serving) -> GenerationOut:
    """Keep one part of the piece and write the other (`write`) in bars
    first_bar..last_bar; with no piece, write that part over `chords` alone (4/4)."""
    settings, steering = s.sampling(body), Steering.from_fields(body)
    cp = s.styles.copilot(body.style)
    if body.midi is None:
        if steering.chords is None:
            raise UserError("midi: give a piece, or chords to write from")
        n = body.bars or len(parse_progression(steering.chords, 4.0))
        if n > s.limits.max_gap_bars:
            raise UserError(f"bars: at most {s.limits.max_gap_bars} without a piece")
        return await s.generate(
            request,
            lambda progress: cp.sketch(
                bars=n,
                write=body.write,
                steering=steering,
                candidates=body.candidates,
                sampling=settings,
                qpm=body.tempo,
                progress=progress,
            ),
        )
    p = await s.upload(request, PieceIn(midi=body.midi, name=body.name), write=body.write)
    first, last = body.first_bar or 1, body.last_bar or p.n_bars
    s.check_gap(first, last)
    return await s.generate(
        request,
        lambda progress: cp.infill(
            p,
            first,
            last,
            candidates=body.candidates,
            sampling=settings,
            steering=steering,
            write=body.write,
            progress=progress,
        ),
    )


@api.post("/api/style")
async def style(body: StyleIn, request: Request, s: Serving) -> StyleOut:
    """Keep a style file (`pianomuse tune`) for this model; requests write in it by its id."""
    name = safe_name(body.name, "style.safetensors")

    def work(_: Any) -> StyleOut:
        style_id, st = s.styles.add(body.data, name)
        m = st.meta
        return StyleOut(id=style_id, name=str(m.get("name", name)), method=st.method,
                        pieces=m.get("pieces"), bits_before=m.get("bits_per_note_before"),
                        bits_after=m.get("bits_per_note_after"))  # fmt: skip

    return await s.reading.run(work, request.is_disconnected)


@api.post("/api/score")
async def score(body: ScoreIn, request: Request, s: Serving) -> ScoreOut:
    """A piece (a candidate's new bars) engraved as the model reads it: MusicXML and SVG."""
    from pianomuse.copilot.score import read_score
    from pianomuse.notation import musicxml, svg

    key = Steering(key=body.key).key if body.key else None  # checked as --key is

    def work(_: Any) -> ScoreOut:
        p = s.read_piece(body)
        notes = read_score(s.copilot.tok, p.source, key=key, title=p.name)
        xml, simplified = musicxml(notes)
        return ScoreOut(musicxml=b64(xml), svg=svg(xml), simplified=simplified)

    return await s.reading.run(work, request.is_disconnected)


@api.post(
    "/api/audio",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}, "audio/mpeg": {}}}},
)
async def audio(body: AudioIn, request: Request, s: Serving) -> Response:
    """A piece (a candidate's whole piece) played on the bundled grand piano: the WAV or MP3
    file itself."""
    from pianomuse.audio import FORMATS, audio_file

    def work(_: Any) -> bytes:
        _, _, score = s.checked_midi(body)  # played as parsed: not read twice
        return audio_file(score, body.format)

    return Response(await s.reading.run(work, request.is_disconnected),
                    media_type=FORMATS[body.format].media_type)  # fmt: skip
