"""The live copilot over a WebSocket (/api/live): the page sends the notes played and a
tick of its clock; the server answers with the copilot's notes, each with its time on the
page's clock, ahead of when they sound.

Messages are JSON objects with a "type". From the page: start {bpm, metre, bars,
silence_bars, mode, seed, temperature, top_p, top_k, + steering fields}, on {t, pitch,
velocity}, off {t, pitch}, tick {t}, trigger {t}, stop {t}; times in seconds on the page's
clock from the session's first bar line. From the server: ready {bar_s}, notes {notes:
[[t, off, pitch, velocity]]}, cancel {t}, status {...}, jam {midi (base64), status}, error
{message} (a bad message is answered and dropped; a bad start ends the session).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal
from urllib.parse import urlparse

import anyio
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field, ValidationError

from pianomuse.copilot import Copilot
from pianomuse.errors import UserError
from pianomuse.limits import LIVE_IDLE_S, LIVE_JSON_DEPTH, LIVE_MESSAGE_BYTES, LIVE_START_S
from pianomuse.live import LiveSession, LiveSettings, Out
from pianomuse.serve.schemas import DrawIn, SteeringIn, problem_line
from pianomuse.steering import Steering


class LiveStart(DrawIn, SteeringIn):
    """The first message of a live session: the jam's settings, how tokens are drawn, and
    every steering field (as the JSON API takes them)."""

    bpm: float = Field(96.0, description="Quarter notes a minute.")
    metre: str = Field("4/4", max_length=8, description="The bar, as a time signature.")
    bars: int = Field(4, description="Bars of each answer.")
    silence_bars: float = Field(1.0, description="The player's silence that asks, in bars.")
    mode: str = Field("answer", max_length=20, description="answer or accompany.")


class LiveEvent(BaseModel):
    """A message after the start."""

    type: Literal["on", "off", "tick", "trigger", "stop"]
    t: float = Field(ge=0, le=86_400, description="Seconds on the page's clock.")
    pitch: int = Field(60, ge=0, le=127)
    velocity: int = Field(90, ge=0, le=127)


def add_live_route(app: FastAPI, copilot: Copilot, max_sessions: int) -> None:
    """The /api/live WebSocket on `app`, at most `max_sessions` jams at once."""
    open_sessions = [0]

    @app.websocket("/api/live")
    async def live(ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origin and urlparse(origin).netloc != ws.headers.get("host"):
            await ws.close(code=1008)  # another site's page may not play through ours
            return
        await ws.accept()
        if open_sessions[0] >= max_sessions:
            await _error(ws, f"busy: {max_sessions} live sessions are open; try again later")
            await ws.close()
            return
        open_sessions[0] += 1
        try:
            session = await _start(ws, copilot)
            if session is not None:
                await _jam(ws, session)
        except WebSocketDisconnect:
            pass
        except TimeoutError:  # a socket that says nothing holds no live slot
            await _error(ws, "closed: no message for too long")
            await ws.close()
        finally:
            open_sessions[0] -= 1


async def _start(ws: WebSocket, copilot: Copilot) -> LiveSession | None:
    try:
        body = LiveStart.model_validate(await _receive(ws, LIVE_START_S))
        settings = LiveSettings(
            bpm=body.bpm,
            metre=body.metre,
            bars=body.bars,
            silence_bars=body.silence_bars,
            mode=body.mode,
        )
        steering, sampling = Steering.from_fields(body), body.sampling()
        # In a worker thread: the first session of a process makes the model's bar graphs
        # (a few seconds), which must not hold up the other users' requests.
        session = await anyio.to_thread.run_sync(
            lambda: LiveSession(copilot, settings, steering=steering, sampling=sampling)
        )
    except ValidationError as e:
        await _error(ws, problem_line(e.errors()))
        await ws.close()
        return None
    except (UserError, ValueError) as e:  # a bad setting, or not JSON
        await _error(ws, str(e))
        await ws.close()
        return None
    await ws.send_json({"type": "ready", "bar_s": settings.beat_s * settings.bar_beats})
    return session


async def _jam(ws: WebSocket, session: LiveSession) -> None:
    while True:
        try:
            event = LiveEvent.model_validate(await _receive(ws, LIVE_IDLE_S))
        except ValidationError as e:
            session.status["dropped"] += 1
            await _error(ws, problem_line(e.errors()))
            continue
        except ValueError as e:
            session.status["dropped"] += 1
            await _error(ws, str(e))
            continue
        if event.type == "stop":
            midi = await anyio.to_thread.run_sync(session.stop, event.t)
            await ws.send_json(
                {"type": "jam", "midi": base64.b64encode(midi).decode(), "status": _status(session)}
            )
            await ws.close()
            return
        outs = await anyio.to_thread.run_sync(_apply, session, event)
        notes = [[o.time, o.off, o.pitch, o.velocity] for o in outs if o.kind == "note"]
        for o in outs:
            if o.kind == "cancel":
                await ws.send_json({"type": "cancel", "t": o.time})
        if notes:
            await ws.send_json({"type": "notes", "notes": notes})


def _apply(session: LiveSession, event: LiveEvent) -> list[Out]:
    """One message into the session (in a worker thread: it may run the model)."""
    if event.type == "on":
        return session.note_on(event.t, event.pitch, event.velocity) + session.poll(event.t)
    if event.type == "off":
        session.note_off(event.t, event.pitch)
    elif event.type == "trigger":
        session.trigger(event.t)
    return session.poll(event.t)


def _status(session: LiveSession) -> dict[str, Any]:
    s = session.status
    return {k: s[k] for k in ("dropped", "bars_absorbed", "answers", "cancelled")}


async def _receive(ws: WebSocket, wait_s: float) -> Any:
    """The next message, checked before it is parsed: text, not too long, not nested deeper
    than a message needs. A socket silent for `wait_s` seconds is closed (`TimeoutError`)."""
    with anyio.fail_after(wait_s):
        message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise ValueError("a message is JSON text, not a binary frame")
    if len(text) > LIVE_MESSAGE_BYTES:
        raise ValueError(f"a message is at most {LIVE_MESSAGE_BYTES} bytes")
    if _depth(text) > LIVE_JSON_DEPTH:
        raise ValueError("a message is a flat JSON object")
    try:
        body = json.loads(text)
    except ValueError:
        raise ValueError("a message must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValueError("a message must be a JSON object")
    return body


def _depth(text: str) -> int:
    """How deep brackets nest in JSON text, strings aside (counted without parsing)."""
    depth = most = 0
    quoted = escaped = False
    for ch in text:
        if quoted:
            escaped, quoted = (False, quoted) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
            most = max(most, depth)
            if most > LIVE_JSON_DEPTH:
                break
        elif ch in "]}":
            depth -= 1
    return most


async def _error(ws: WebSocket, message: str) -> None:
    await ws.send_json({"type": "error", "message": message})
