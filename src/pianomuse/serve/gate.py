"""Keeping one shared model answerable under load: gates, a body-size cap, a Host check.

Generation is serialised: the model's CPU threads are already busy with one batch, so a second
batch at the same time would only make both slower. A gate lets one request run and a
bounded number wait; the next one is told "busy" with an estimate of when to come back,
instead of piling up until memory or patience runs out. Work that runs is bounded too: it
stops at its next step when it passes its time limit, when its client has gone, or when the
server shuts down (the work reports progress after every token, and that report is where it
stops).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class Busy(Exception):
    """Too many requests are waiting; `retry_after` is a hint in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; try again in {retry_after} s")
        self.retry_after = retry_after


class Stopped(Exception):
    """Work stopped before its end: its time limit, its client gone, or a shutdown."""


class Gate:
    """One job at a time, `queue` more waiting, the rest turned away; a job runs at most
    `max_seconds`."""

    def __init__(self, queue: int, max_seconds: float = math.inf):
        self.queue = queue
        self.max_seconds = max_seconds
        self.pending = 0  # running + waiting; only touched on the event loop
        self.busy = False
        self.progress = 0.0  # share done of the running request (written by its thread)
        self.mean_s = 5.0  # running mean of a job's duration, for Retry-After
        self.stopping = False  # set once by `shutdown`, read by the worker thread
        self._lock = asyncio.Lock()

    @property
    def waiting(self) -> int:
        return max(self.pending - (1 if self.busy else 0), 0)

    def shutdown(self) -> None:
        """Stop the running job at its next step and refuse the waiting ones (safe to call
        from a signal handler)."""
        self.stopping = True

    async def run(
        self,
        fn: Callable[[Callable[[float], None]], T],
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> T:
        """Run `fn(progress)` on a worker thread when its turn comes, or raise `Busy`.
        `progress(share)` raises `Stopped` once the job should end; `gone()` tells whether
        the job's client has disconnected (it is asked before the job starts and while it
        runs)."""
        if self.stopping:
            raise Stopped("the server is shutting down")
        if self.pending >= 1 + self.queue:
            raise Busy(min(max(math.ceil(self.mean_s * self.pending), 1), 600))
        self.pending += 1
        try:
            async with self._lock:
                if self.stopping:
                    raise Stopped("the server is shutting down")
                if gone is not None and await gone():
                    raise Stopped("the client has gone")
                self.busy, self.progress = True, 0.0
                t0 = time.perf_counter()
                left = threading.Event()  # the client has gone
                watch = asyncio.create_task(_watch(gone, left)) if gone is not None else None
                try:
                    return await run_in_threadpool(fn, self._reporter(t0, left))
                finally:
                    if watch is not None:
                        watch.cancel()
                    self.mean_s = 0.7 * self.mean_s + 0.3 * (time.perf_counter() - t0)
                    self.busy = False
        finally:
            self.pending -= 1

    def _reporter(self, t0: float, left: threading.Event) -> Callable[[float], None]:
        def progress(share: float) -> None:
            self.progress = share
            if self.stopping:
                raise Stopped("the server is shutting down")
            if left.is_set():
                raise Stopped("the client has gone")
            if time.perf_counter() - t0 > self.max_seconds:
                raise Stopped(
                    f"stopped after {self.max_seconds:g} s, the most one request may take "
                    "here; ask for fewer bars or candidates"
                )

        return progress


async def _watch(gone: Callable[[], Awaitable[bool]], left: threading.Event) -> None:
    """Set `left` as soon as the client disconnects."""
    while not await gone():
        await asyncio.sleep(0.25)
    left.set()


class HostCheck:
    """ASGI wrapper that answers 400 to a request whose Host header is not one of
    `allowed`: a page elsewhere cannot then reach a local server by DNS rebinding (its
    requests carry its own host name). Written here rather than Starlette's
    TrustedHostMiddleware, which cuts an IPv6 Host such as "[::1]:8000" at its first colon."""

    def __init__(self, app: Any, allowed: Sequence[str]):
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in allowed}
        self.gates: tuple[Gate, ...] = ()  # the app's gates, stopped at shutdown

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket") and "*" not in self.allowed:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            if _host_name(host) not in self.allowed:
                await _reply(send, 400, f"the Host header {host!r} is not one this server answers")
                return
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """The name in a Host header: "[::1]:8000" -> "::1", "localhost:8000" -> "localhost"."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _reply(send: Callable, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI wrapper that refuses request bodies over `max_bytes` with 413 before the app
    sees them (it reads the body itself, so a chunked upload without Content-Length is
    capped too)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._too_large(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable) -> None:
        await _reply(send, 413, f"the request is larger than {self.max_bytes / 1e6:.1f} MB")
