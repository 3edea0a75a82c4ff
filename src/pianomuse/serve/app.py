"""The web copilot: one page and a JSON API over one shared model.

    app = web_app(Copilot(model))  # an ASGI app: uvicorn.run(app, host=..., port=...)

Routes: GET / (the page), GET /static/* (its script and style, all in the package: the page
loads nothing from elsewhere), GET /api/status, POST /api/piece, /api/complete, /api/infill
and /api/arrange, and the WebSocket /api/live (`pianomuse.serve.live`); the schema is at
/openapi.json (no Swagger page: it would load from a CDN).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from pianomuse import __version__
from pianomuse.copilot import Copilot, Generation
from pianomuse.copilot.steering import Steering
from pianomuse.errors import FieldError, UserError
from pianomuse.generate.sampling import Sampling
from pianomuse.harmony import parse_progression
from pianomuse.limits import MAX_MIDDLE_BARS
from pianomuse.serve.gate import BodyLimit, Busy, Gate, HostCheck, Stopped
from pianomuse.serve.live import add_live_route
from pianomuse.serve.schemas import (
    ArrangeIn,
    CompleteIn,
    GenerationOut,
    InfillIn,
    Limits,
    PieceIn,
    PieceView,
    SamplingIn,
    StatusOut,
    SteeringIn,
    problem_line,
)
from pianomuse.serve.views import generation_out, piece_view
from pianomuse.tokenizer import Piece
from pianomuse.tokenizer.midi_io import parse_midi

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the shared model."""

    max_upload_bytes: int = 2 * 1024 * 1024  # MIDI file size (solo piano is rarely > 200 kB)
    max_notes: int = 50_000  # notes in an uploaded piece (an hour of dense piano)
    max_beats: int = 8_000  # length of an uploaded piece (2,000 bars of 4/4)
    max_bars: int = 32  # bars per continuation
    max_gap_bars: int = MAX_MIDDLE_BARS  # bars per infill (what training shows)
    max_candidates: int = 8  # alternatives per request
    max_seconds: int = 120  # time one generation may take before it is stopped
    queue: int = 4  # requests that may wait behind the running one before "busy"
    max_live: int = 2  # live jams (WebSocket sessions) at once

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            least = 0 if name == "queue" else 1
            if value < least:
                raise UserError(f"--{name.replace('_', '-')} must be at least {least}")


# The names a server bound to this machine answers to by default (see `HostCheck`).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def web_app(
    copilot: Copilot, limits: ServeLimits | None = None, hosts: Sequence[str] = LOCAL_HOSTS
) -> HostCheck:
    """The ASGI app to serve: the API behind a Host check and a request-size cap; its
    `gates` are what a shutdown stops."""
    limits = limits or ServeLimits()
    api = create_app(copilot, limits)
    # base64 is 4/3 of the file; 64 kB leaves room for the other JSON fields.
    served = HostCheck(BodyLimit(api, limits.max_upload_bytes * 4 // 3 + 65536), hosts)
    served.gates = api.state.gates
    return served


def create_app(copilot: Copilot, limits: ServeLimits) -> FastAPI:
    app = FastAPI(
        title="Piano Muse",
        version=__version__,
        description="Continue and infill solo-piano MIDI with an RWKV-7 model.",
        docs_url=None,
        redoc_url=None,
    )
    gate = Gate(limits.queue, limits.max_seconds)
    # Reading an upload is queued too: 30 large uploads at once would hold 30 parsed pieces.
    reading = Gate(limits.queue)
    app.state.gates = (gate, reading)
    model_name = str(copilot.model_info.get("model", "model"))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_live_route(app, copilot, limits.max_live)

    @app.exception_handler(UserError)
    async def user_error(_: Request, e: UserError) -> JSONResponse:
        # A bad setting is named by its JSON field, as the command line names its option.
        detail = f"{e.field}: {e.problem}" if isinstance(e, FieldError) else str(e)
        return JSONResponse({"detail": detail}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": problem_line(e.errors())}, 422)

    @app.exception_handler(Busy)
    async def busy(_: Request, e: Busy) -> JSONResponse:
        headers = {"Retry-After": str(e.retry_after)}
        return JSONResponse({"detail": str(e)}, status_code=503, headers=headers)

    @app.exception_handler(Stopped)
    async def stopped(_: Request, e: Stopped) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=503)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/status")
    async def status() -> StatusOut:
        """The model, whether it is busy, and the limits of a request."""
        return StatusOut(
            model=model_name,
            busy=gate.busy,
            waiting=gate.waiting,
            progress=gate.progress,
            limits=Limits(**asdict(limits)),
        )

    def read_piece(body: PieceIn, write: str | None = None) -> Piece:
        """The uploaded piece, read by the model's tokenizer (to `write` one part: see
        `Copilot.read`); every problem is a one-line UserError."""
        name = re.sub(r"[^\w.\- ]", "_", Path(body.name.replace("\\", "/")).name)[:80] or "piece"
        try:
            data = base64.b64decode(body.midi, validate=True)
        except (binascii.Error, ValueError):
            raise UserError(f"{name}: the upload is not valid base64") from None
        if len(data) > limits.max_upload_bytes:
            raise UserError(
                f"{name}: {len(data) / 1e6:.1f} MB is more than the "
                f"{limits.max_upload_bytes / 1e6:.1f} MB this server accepts"
            )
        # Every event counts: a few far-apart events would make thousands of empty bars.
        score = parse_midi(data, name=name, max_beats=limits.max_beats)
        n = score.note_num()
        if n > limits.max_notes:
            raise UserError(f"{name}: {n} notes is more than the {limits.max_notes} allowed")
        return copilot.read(data, name=name, write=write)

    def sampling(body: SamplingIn) -> Sampling:
        """The sampling settings of a request, built once here and passed whole."""
        if body.candidates > limits.max_candidates:
            raise UserError(f"candidates: at most {limits.max_candidates} per request")
        return Sampling(**body.model_dump(include=set(SamplingIn.model_fields) - {"candidates"}))

    def steering(body: SteeringIn) -> Steering:
        """The steering settings of a request, built once here and passed whole."""
        return Steering.parse(
            chords=body.chords,
            key=body.key,
            scale=body.scale,
            chromatic=body.chromatic,
            ranges={
                "all": body.range,
                "melody": body.melody_range,
                "accompaniment": body.accompaniment_range,
                "bass": body.bass_range,
            },
            density=body.density,
        )

    async def generate(request: Request, make: Callable[[Any], Generation]) -> GenerationOut:
        """Run `make(progress)` through the generation gate; its answer, timed."""

        def work(progress: Any) -> GenerationOut:
            t0 = time.perf_counter()
            result = make(progress)
            seconds = time.perf_counter() - t0
            return generation_out(result, seconds, copilot.chords(result.piece))

        return await gate.run(work, request.is_disconnected)

    @app.post("/api/piece")
    async def piece(body: PieceIn, request: Request) -> PieceView:
        """Bars and notes of an uploaded MIDI file (no model involved)."""

        def work(_: Any) -> PieceView:
            piece = read_piece(body)
            return piece_view(piece.source, piece.bar_ticks, piece.name, copilot.chords(piece))

        return await reading.run(work, request.is_disconnected)

    @app.post("/api/complete")
    async def complete(body: CompleteIn, request: Request) -> GenerationOut:
        """Continue the piece by `bars` bars, `candidates` alternatives ranked by likelihood."""
        settings, steer = sampling(body), steering(body)
        if body.bars > limits.max_bars:
            raise UserError(f"bars: at most {limits.max_bars} per request")
        piece = await reading.run(lambda _: read_piece(body), request.is_disconnected)
        return await generate(
            request,
            lambda progress: copilot.complete(
                piece,
                bars=body.bars,
                candidates=body.candidates,
                sampling=settings,
                steering=steer,
                progress=progress,
            ),
        )

    @app.post("/api/infill")
    async def infill(body: InfillIn, request: Request) -> GenerationOut:
        """Rewrite bars first_bar..last_bar so that they lead into the music after them."""
        settings, steer = sampling(body), steering(body)
        if body.last_bar < body.first_bar:
            raise UserError("last_bar: must not come before first_bar")
        if body.last_bar - body.first_bar + 1 > limits.max_gap_bars:
            raise UserError(f"a gap may be at most {limits.max_gap_bars} bars here")
        piece = await reading.run(lambda _: read_piece(body), request.is_disconnected)
        return await generate(
            request,
            lambda progress: copilot.infill(
                piece,
                body.first_bar,
                body.last_bar,
                candidates=body.candidates,
                sampling=settings,
                steering=steer,
                progress=progress,
            ),
        )

    @app.post("/api/arrange")
    async def arrange(body: ArrangeIn, request: Request) -> GenerationOut:
        """Keep one part of the piece and write the other (`write`) in bars
        first_bar..last_bar; with no piece, write that part over `chords` alone (4/4)."""
        settings, steer = sampling(body), steering(body)
        if body.midi is None:
            if steer.chords is None:
                raise UserError("midi: give a piece, or chords to write from")
            n = body.bars or len(parse_progression(steer.chords, 4.0))
            if n > limits.max_gap_bars:
                raise UserError(f"bars: at most {limits.max_gap_bars} without a piece")
            return await generate(
                request,
                lambda progress: copilot.sketch(
                    bars=n,
                    write=body.write,
                    steering=steer,
                    candidates=body.candidates,
                    sampling=settings,
                    qpm=body.tempo,
                    progress=progress,
                ),
            )
        upload = PieceIn(midi=body.midi, name=body.name)
        piece = await reading.run(
            lambda _: read_piece(upload, write=body.write),
            request.is_disconnected,
        )
        first, last = body.first_bar or 1, body.last_bar or piece.n_bars
        if last < first:
            raise UserError("last_bar: must not come before first_bar")
        if last - first + 1 > limits.max_gap_bars:
            raise UserError(f"a gap may be at most {limits.max_gap_bars} bars here")
        return await generate(
            request,
            lambda progress: copilot.infill(
                piece,
                first,
                last,
                candidates=body.candidates,
                sampling=settings,
                steering=steer,
                write=body.write,
                progress=progress,
            ),
        )

    return app
