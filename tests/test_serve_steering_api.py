"""Steering and arranging over the web API: the same settings as the command line, as JSON
fields; the chords a piece has and the chords written come back with every view."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import aligned_song
from pianomuse.copilot import Copilot
from pianomuse.serve import ServeLimits, web_app
from pianomuse.tokenizer import load_score, notes_in_beats

# Song 002 on its annotated beats, in 4/4: MELODY, BRIDGE and PIANO tracks.
SONG = aligned_song("002")
SONG_B64 = base64.b64encode(SONG.dumps_midi()).decode()


@pytest.fixture(scope="module")
def copilot(trained_model) -> Copilot:
    return Copilot(trained_model)


@pytest.fixture(scope="module")
def client(copilot) -> TestClient:
    app = web_app(copilot, ServeLimits(max_candidates=4))
    return TestClient(app, base_url="http://localhost")


def _ok(r) -> dict:
    assert r.status_code == 200, r.text[:300]
    return r.json()


def test_piece_view_has_the_chords_the_model_reads(client, copilot):
    view = _ok(client.post("/api/piece", json={"midi": SONG_B64}))
    want = copilot.chords(copilot.read(SONG.dumps_midi()))
    assert view["chords"] == want and len(want) > 10
    beats = [b for b, _ in want]
    assert beats == sorted(beats) and beats[0] >= 0 and beats[-1] < view["bar_beats"][-1]
    assert all(isinstance(s, str) and s for _, s in want)


def test_complete_keeps_the_chords_and_key_asked(client):
    body = {
        "midi": SONG_B64,
        "bars": 4,
        "candidates": 2,
        "seed": 4,
        "chords": "C G Am F",
        "key": "C major",
    }
    out = _ok(client.post("/api/complete", json=body))
    start = out["new_from_beat"]
    for c in out["candidates"]:
        side = c["sidecar"]
        assert side["steering"] == {"chords": "C G Am F", "key": "C major"}
        assert side["chords"] == [[0.0, "C"], [4.0, "G"], [8.0, "Am"], [12.0, "F"]]
        new = notes_in_beats(load_score(base64.b64decode(c["new_midi"])))
        assert len(new["pitch"]) > 0
        assert set((new["pitch"] % 12).tolist()) <= {0, 2, 4, 5, 7, 9, 11}
        # The view's chord lane: the piece's chords before the seam, the asked ones after.
        lane = c["view"]["chords"]
        assert [s for b, s in lane if b >= start] == ["C", "G", "Am", "F"]
        assert [b for b, s in lane if b >= start] == [start + x for x in (0, 4, 8, 12)]


def test_complete_keeps_to_the_keys_at_once_asked(client):
    body = {"midi": SONG_B64, "bars": 3, "candidates": 3, "seed": 2, "temperature": 1.3}
    for most in (None, 2):
        out = _ok(client.post("/api/complete", json={**body, "max_polyphony": most}))
        at_once = []
        for c in out["candidates"]:
            new = notes_in_beats(load_score(base64.b64decode(c["new_midi"])))
            on, off = new["onset"], new["onset"] + new["duration"]
            at_once.append(max(((on <= t + 1e-6) & (off > t + 1e-6)).sum() for t in on))
            want = {} if most is None else {"max_polyphony": most}
            assert c["sidecar"]["steering"] == want
        assert max(at_once) > 2 if most is None else max(at_once) <= most


def test_arrange_writes_an_accompaniment_to_the_kept_melody(client):
    body = {"midi": SONG_B64, "first_bar": 9, "last_bar": 10, "candidates": 2, "seed": 2}
    out = _ok(client.post("/api/arrange", json=body))
    assert out["kind"] == "arrange" and out["first_new_bar"] == 9 and out["new_bars"] == 2
    a, b = out["new_from_beat"], out["new_to_beat"]

    def notes(score, name: str, inside: bool) -> list[tuple[int, int, int]]:
        track = [t for t in score.tracks if t.name.upper() == name][0]
        q = score.tpq
        return [
            (n.time * 480 // q, n.pitch, n.duration * 480 // q)
            for n in track.notes
            if (a <= n.time / q < b) == inside
        ]

    melody = notes(SONG, "MELODY", True)
    assert len(melody) > 3
    for c in out["candidates"]:
        assert c["sidecar"]["context"]["write"] == "accompaniment"
        full = load_score(base64.b64decode(c["midi"]))
        # The melody track comes back note for note, in the gap too; the accompaniment
        # tracks keep everything outside it, and the new accompaniment is its own track.
        assert notes(full, "MELODY", True) == melody
        assert notes(full, "PIANO", False) == notes(SONG, "PIANO", False)
        assert notes(full, "PIANO", True) == []
        new = notes(full, "PIANO MUSE", True)
        assert len(new) > 0 and notes(full, "PIANO MUSE", False) == []


def test_music_from_chords_alone(client):
    body = {"chords": "C F G C", "write": "melody", "candidates": 2, "tempo": 90, "seed": 1}
    out = _ok(client.post("/api/arrange", json=body))
    assert out["kind"] == "sketch" and out["new_bars"] == 4
    for c in out["candidates"]:
        assert c["sidecar"]["chords"] == [[0.0, "C"], [4.0, "F"], [8.0, "G"], [12.0, "C"]]
        score = load_score(base64.b64decode(c["midi"]))
        assert abs(score.tempos[0].qpm - 90) < 0.5
        onsets = notes_in_beats(score)["onset"]
        assert len(onsets) > 0 and np.all(onsets < 16)


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/api/complete", {"key": "H minor"}, 400, "key: 'H minor'"),
        ("/api/complete", {"range": "C6"}, 400, "range: takes LOW-HIGH"),
        ("/api/complete", {"melody_range": "H2-C6"}, 400, "melody_range: 'H2' is not a note"),
        ("/api/complete", {"accompaniment_range": "C6-C2"}, 400, "accompaniment_range: C6-C2"),
        ("/api/complete", {"bass_range": "C2-A2"}, 400, "bass_range: C2-A2 is narrower"),
        (
            "/api/arrange",
            {"write": "melody", "bass_range": "C2-C3", "first_bar": 1, "last_bar": 2},
            400,
            "bass_range: shapes the accompaniment, which is given here",
        ),
        ("/api/complete", {"density": "lots"}, 400, "density: "),
        ("/api/complete", {"chords": "C Xyz"}, 400, "chords: "),
        ("/api/complete", {"scale": "C,D,Q"}, 400, "scale: 'Q'"),
        ("/api/complete", {"chromatic": "sometimes"}, 422, "chromatic"),
        ("/api/infill", {"key": "C major", "chords": "C F#"}, 400, "chords: F# has C#, F#, A#"),
        ("/api/arrange", {"midi": None}, 400, "midi: give a piece, or chords"),
        ("/api/arrange", {"write": "drums"}, 422, "write: "),
        ("/api/arrange", {"midi": None, "chords": "C", "bars": 99}, 400, "bars: at most"),
        ("/api/arrange", {"midi": None, "chords": "C", "tempo": 5}, 400, "tempo: must be between"),
        ("/api/arrange", {"first_bar": 5, "last_bar": 4}, 400, "before first_bar"),
        ("/api/complete", {"max_polyphony": 0}, 422, "max_polyphony: Input should be greater"),
        ("/api/complete", {"temperature": 1e-300}, 400, "temperature: must be 0 (greedy) or"),
    ],
)
def test_bad_steering_gets_one_clear_line(client, path, body, status, words):
    full = {"midi": SONG_B64, "candidates": 1, **body}
    if path == "/api/infill":
        full = {"first_bar": 1, "last_bar": 1, **full}
    r = client.post(path, json=full)
    assert r.status_code == status, r.text[:300]
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and words in detail, detail
