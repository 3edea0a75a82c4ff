"""Keeping one shared model answerable under load: a generation gate and a body-size cap.

Generation is serialised: the model's CPU threads are already busy with one batch, so a second
batch at the same time would only make both slower. The gate lets one request run and a
bounded number wait; the next one is told "busy" with an estimate of when to come back,
instead of piling up until memory or patience runs out.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class Busy(Exception):
    """Too many requests are waiting; `retry_after` is a hint in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; try again in {retry_after} s")
        self.retry_after = retry_after


class Gate:
    """One generation at a time, `queue` more waiting, the rest turned away."""

    def __init__(self, queue: int):
        self.queue = queue
        self.pending = 0  # running + waiting; only touched on the event loop
        self.busy = False
        self.progress = 0.0  # share done of the running request (written by its thread)
        self.mean_s = 5.0  # running mean of a generation's duration, for Retry-After
        self._lock = asyncio.Lock()

    @property
    def waiting(self) -> int:
        return max(self.pending - (1 if self.busy else 0), 0)

    async def run(self, fn: Callable[[Callable[[float], None]], T]) -> T:
        """Run `fn(progress)` on a worker thread when its turn comes, or raise `Busy`."""
        if self.pending >= 1 + self.queue:
            raise Busy(min(max(math.ceil(self.mean_s * self.pending), 1), 600))
        self.pending += 1
        try:
            async with self._lock:
                self.busy, self.progress = True, 0.0
                t0 = time.perf_counter()
                try:
                    return await run_in_threadpool(fn, self._report)
                finally:
                    self.mean_s = 0.7 * self.mean_s + 0.3 * (time.perf_counter() - t0)
                    self.busy = False
        finally:
            self.pending -= 1

    def _report(self, share: float) -> None:
        self.progress = share


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
        mb = self.max_bytes / 1e6
        body = json.dumps({"detail": f"the request is larger than {mb:.1f} MB"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
