"""The web copilot: one page and a JSON API over one shared model.

    app = web_app(Copilot(model))  # an ASGI app: uvicorn.run(app, host=..., port=...)

Routes: GET / (the page), GET /static/* (its script and style, all in the package: the page
loads nothing from elsewhere), GET /api/status, POST /api/piece, /api/complete, /api/infill
and /api/arrange (`pianomuse.serve.routes`), and the WebSocket /api/live
(`pianomuse.serve.live`); the schema is at /openapi.json (no Swagger page: it would load from
a CDN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from pianomuse import __version__
from pianomuse.copilot import Copilot
from pianomuse.errors import FieldError, UserError
from pianomuse.limits import MAX_MIDDLE_BARS
from pianomuse.serve.gate import BodyLimit, Busy, Gate, HostCheck, Stopped
from pianomuse.serve.live import add_live_route
from pianomuse.serve.routes import Served, api
from pianomuse.serve.schemas import problem_line
from pianomuse.serve.styles import StyleShelf

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
    app = create_app(copilot, limits)
    # base64 is 4/3 of the file; 64 kB leaves room for the other JSON fields.
    served = HostCheck(BodyLimit(app, limits.max_upload_bytes * 4 // 3 + 65536), hosts)
    served.gates = app.state.gates
    return served


def create_app(copilot: Copilot, limits: ServeLimits) -> FastAPI:
    """The page, the API (`routes.api`) and the live socket over `copilot`."""
    app = FastAPI(
        title="Piano Muse",
        version=__version__,
        description="Continue and infill solo-piano MIDI with an RWKV-7 model.",
        docs_url=None,
        redoc_url=None,
    )
    # Generation runs one at a time; reading an upload is queued too: 30 large uploads at
    # once would hold 30 parsed pieces.
    gates = Gate(limits.queue, limits.max_seconds), Gate(limits.queue)
    state = Served(copilot, limits, *gates, StyleShelf(copilot))
    app.state.served = state
    app.state.gates = (state.gate, state.reading)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(api)
    add_live_route(app, copilot, limits.max_live)
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_api_route("/", page, include_in_schema=False)
    return app


async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def _user_error(_: Request, e: Exception) -> JSONResponse:
    # A bad setting is named by its JSON field, as the command line names its option.
    detail = f"{e.field}: {e.problem}" if isinstance(e, FieldError) else str(e)
    return JSONResponse({"detail": detail}, status_code=400)


async def _bad_request(_: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, RequestValidationError)
    return JSONResponse({"detail": problem_line(e.errors())}, 422)


async def _busy(_: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, Busy)
    headers = {"Retry-After": str(e.retry_after)}
    return JSONResponse({"detail": str(e)}, status_code=503, headers=headers)


async def _stopped(_: Request, e: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(e)}, status_code=503)


HANDLERS = {
    UserError: _user_error,
    RequestValidationError: _bad_request,
    Busy: _busy,
    Stopped: _stopped,
}
