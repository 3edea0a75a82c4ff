"""The live copilot's WebSocket, end to end against `pianomuse serve` (a real server)."""

from __future__ import annotations

import base64
import json

import pytest

from pianomuse.tokenizer import load_score
from test_live import phrase


def _connect(server: str, **kw):
    from websockets.sync.client import connect

    return connect(server.replace("http://", "ws://") + "/api/live", open_timeout=30, **kw)


def _until(ws, kind: str) -> dict:
    """The next message of type `kind` (others are skipped)."""
    while True:
        msg = json.loads(ws.recv(timeout=60))
        if msg["type"] == kind:
            return msg


def test_a_jam_over_the_websocket(server):
    """Play a phrase, keep ticking until the answer's notes come, come back in the middle of
    it (cancel), stop: the jam holds the phrase note for note and the answer as sent."""
    with _connect(server) as ws:
        ws.send(json.dumps({"type": "start", "bpm": 120, "bars": 2, "seed": 4}))
        assert _until(ws, "ready")["bar_s"] == 2.0
        events = phrase(2)
        for at, kind, pitch, vel in events:
            ws.send(json.dumps({"type": kind, "t": at, "pitch": pitch, "velocity": vel}))
        # Ticks every 50 ms of the page's clock (faster than real time): a bar of silence
        # after the phrase, the answer from the next bar line (8 s); back in it at 9 s.
        t = events[-1][0]
        while t < 9.0:
            t = round(t + 0.05, 3)
            ws.send(json.dumps({"type": "tick", "t": t}))
        back = t
        ws.send(json.dumps({"type": "on", "t": back, "pitch": 60, "velocity": 80}))
        ws.send(json.dumps({"type": "off", "t": back + 0.3, "pitch": 60}))
        ws.send(json.dumps({"type": "stop", "t": back + 0.5}))
        messages = []
        while True:
            msg = json.loads(ws.recv(timeout=60))
            messages.append(msg)
            if msg["type"] == "jam":
                break
    notes = [n for m in messages if m["type"] == "notes" for n in m["notes"]]
    cancels = [m["t"] for m in messages if m["type"] == "cancel"]
    assert cancels == [back]
    assert notes and min(n[0] for n in notes) >= 8.0 - 1e-9
    jam = load_score(base64.b64decode(messages[-1]["midi"]))
    player, copilot = (t.notes.numpy() for t in jam.tracks)
    assert len(player["time"]) == sum(e[1] == "on" for e in events) + 1
    sent = sorted((round(n[0] * 960), n[2]) for n in notes if n[0] < back)
    kept = sorted(zip(copilot["time"].tolist(), copilot["pitch"].tolist(), strict=True))
    assert kept == sent
    assert messages[-1]["status"]["answers"] == 1


def test_notes_that_arrive_during_ticks_come_back_ahead_of_time(server):
    """Every answer note reaches the page before its time on the page's clock."""
    with _connect(server) as ws:
        ws.send(json.dumps({"type": "start", "bpm": 120, "bars": 1}))
        _until(ws, "ready")
        for at, kind, pitch, vel in phrase(1):
            ws.send(json.dumps({"type": kind, "t": at, "pitch": pitch, "velocity": vel}))
        early, t = [], 2.0
        while t < 8.0:
            t = round(t + 0.05, 3)
            ws.send(json.dumps({"type": "trigger" if t == 2.05 else "tick", "t": t}))
        ws.send(json.dumps({"type": "stop", "t": t}))
        while True:
            msg = json.loads(ws.recv(timeout=60))
            if msg["type"] == "notes":
                early += msg["notes"]
            if msg["type"] == "jam":
                break
    assert early and all(n[0] >= 4.0 - 1e-9 for n in early)  # the bar after the trigger


@pytest.mark.parametrize(
    "start, words",
    [
        ({"type": "start", "bpm": 0}, "bpm must be between 20 and 300"),
        ({"type": "start", "mode": "solo"}, "mode must be answer or accompany"),
        ({"type": "start", "mode": "accompany", "chords": "C G"}, "chords steer answers"),
        ({"type": "start", "metre": "5/x"}, "metre takes a time signature"),
        ({"type": "start", "key": "H major"}, "key 'H major'"),
        ({"type": "start", "bars": "many"}, "bars: Input should be a valid integer"),
    ],
)
def test_a_bad_start_is_one_line(server, start, words):
    with _connect(server) as ws:
        ws.send(json.dumps(start))
        msg = json.loads(ws.recv(timeout=60))
    assert msg["type"] == "error" and words in msg["message"], msg


def test_bad_events_are_answered_and_counted_never_a_crash(server):
    with _connect(server) as ws:
        ws.send(json.dumps({"type": "start", "bpm": 120}))
        _until(ws, "ready")
        ws.send("not json")
        assert "JSON object" in _until(ws, "error")["message"]
        ws.send(json.dumps({"type": "dance", "t": 1}))
        assert _until(ws, "error")["message"].startswith("type: ")
        ws.send(json.dumps({"type": "on", "t": 5.0, "pitch": 60}))
        ws.send(json.dumps({"type": "on", "t": 4.0, "pitch": 62}))  # back in time: dropped
        for k in range(10_000):  # a flood: 10,000 notes in one second
            ws.send(json.dumps({"type": "on", "t": 6 + k / 10_000, "pitch": 40 + k % 40}))
        ws.send(json.dumps({"type": "stop", "t": 7.5}))
        jam = _until(ws, "jam")
    assert jam["status"]["dropped"] == 2 + 1 + 9_900
    assert len(load_score(base64.b64decode(jam["midi"])).tracks[0].notes) == 1 + 100


def test_another_sites_page_cannot_open_a_jam(server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus), _connect(server, origin="http://evil.example"):
        pass
