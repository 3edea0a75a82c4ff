"""The live copilot's WebSocket, end to end against `pianomuse serve` (a real server)."""

from __future__ import annotations

import base64
import json

import numpy as np
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


# Every steering field the socket takes, and what it must become in the session's grammar:
# (start fields, the constraint, a check of it) or (start fields, words of the one-line
# refusal) where the session cannot honour it.
FIELDS = {
    "chords": ({"chords": "C G"}, "ChordPlan", lambda c: [len(bar) for bar in c.plan] == [1, 1]),
    "key": ({"key": "D major"}, "Scale", lambda c: c.inside.sum() == 7 and c.passing == 0),
    "scale": (
        {"scale": "C,E,G"},
        "Scale",
        lambda c: np.flatnonzero(c.inside).tolist() == [0, 4, 7],
    ),
    "chromatic": ({"key": "C major", "chromatic": True}, "Scale", lambda c: c.passing > 0),
    "range": ({"range": "C3-C6"}, "Register", lambda c: c.ranges == {-1: (48, 84)}),
    "melody_range": ({"melody_range": "C5-C6"}, "melody_range needs a piece with a melody"),
    "accompaniment_range": (
        {"mode": "accompany", "accompaniment_range": "C2-C4"},
        "Register",
        lambda c: c.ranges == {1: (36, 60)},
    ),
    "bass_range": ({"bass_range": "C2-C3"}, "BassLine", lambda c: (c.low, c.high) == (36, 48)),
    "density": ({"density": "4"}, "Density", lambda c: c.low <= 4 <= c.high),
    "max_polyphony": ({"max_polyphony": 2}, "MaxPolyphony", lambda c: c.most == 2),
    # Read off the jam, so in the answer's grammar alone (the start check has no jam yet):
    # planned chords (and their bass line), and the texture kept (notes a bar).
    "plan": ({"plan": "auto"}, "PerRow", lambda c: type(c.rules[0]).__name__ == "ChordPlan"),
    "texture": ({"texture": "keep"}, "Density", lambda c: 0 < c.low < c.high),
}
FROM_THE_JAM = ("plan", "texture")


def test_the_socket_honours_every_steering_field(trained_model, monkeypatch):
    """Each steering field, sent alone in a live start, is in the grammar of the session's
    answers (or accompaniments), or is refused in one line; none is dropped."""
    from pianomuse.copilot import Copilot
    from pianomuse.live import session
    from pianomuse.serve import web_app
    from pianomuse.steering import Steering
    from serve_helpers import LiveServer

    assert set(FIELDS) == set(Steering.names())  # a new field needs its row here
    grammars = []

    def recording(steering, scene):
        steered = compile_steering(steering, scene)
        grammars.append(steered.grammar)
        return steered

    compile_steering = session.compile_steering
    monkeypatch.setattr(session, "compile_steering", recording)
    with LiveServer(web_app(Copilot(trained_model))) as url:
        for name, (fields, *want) in FIELDS.items():
            grammars.clear()
            with _connect(url) as ws:
                ws.send(json.dumps({"type": "start", "bpm": 120, "bars": 2, "seed": 1, **fields}))
                first = json.loads(ws.recv(timeout=60))
                if len(want) == 1:
                    assert first["type"] == "error" and want[0] in first["message"], first
                    continue
                assert first["type"] == "ready", first
                for at, kind, pitch, vel in phrase(4):
                    ws.send(json.dumps({"type": kind, "t": at, "pitch": pitch, "velocity": vel}))
                t = 8.0
                while t < 14.0:  # the answer (or the accompaniment of bars 3-5)
                    t = round(t + 0.1, 3)
                    ws.send(json.dumps({"type": "tick", "t": t}))
                ws.send(json.dumps({"type": "stop", "t": t}))
                _until(ws, "jam")
            kind, check = want
            assert len(grammars) >= 2, name  # checked at the start, then the music written
            for g in grammars[1 if name in FROM_THE_JAM else 0 :]:
                mine = [c for c in g.constraints if type(c).__name__ == kind]
                assert mine and check(mine[0]), (name, g.constraints)
