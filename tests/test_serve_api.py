"""The web API: real songs in, ranked candidates out; bad requests refused in one line; a
burst of concurrent users on loopback all answered while one model serves them."""

from __future__ import annotations

import base64
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import POP909
from pianomuse.copilot import Copilot
from pianomuse.serve import ServeLimits, web_app
from pianomuse.serve.app import STATIC
from pianomuse.tokenizer import load_score, merge_to_piano, notes_in_beats
from serve_helpers import LiveServer, get, midi_b64, post

SONG = POP909 / "004" / "004.mid"


@pytest.fixture(scope="module")
def copilot(trained_model) -> Copilot:
    return Copilot(trained_model)


@pytest.fixture(scope="module")
def client(copilot) -> TestClient:
    app = web_app(copilot, ServeLimits(max_upload_bytes=200_000, max_candidates=4))
    return TestClient(app, base_url="http://localhost")  # a Host this server answers


def _notes(midi: bytes | Path) -> np.ndarray:
    """[notes, 4] rows of onset, pitch, velocity, duration (beats), in a canonical order."""
    n = notes_in_beats(merge_to_piano(load_score(midi)))
    m = np.stack([n[k] for k in ("onset", "pitch", "velocity", "duration")], axis=1)
    return m[np.lexsort(m[:, :3].T[::-1])]


def _same(a: np.ndarray, b: np.ndarray, new: np.ndarray) -> bool:
    """Same notes. Durations are compared as totals per key, on keys the `new` notes do not
    strike: MIDI cannot say which note-off ends which of two overlapping notes of one key, so
    a write and a read may pair them differently (the sum of off - on per key is unchanged)."""
    if a.shape != b.shape or not np.allclose(a[:, :3], b[:, :3]):
        return False
    per_key = [np.bincount(m[:, 1].astype(int), weights=m[:, 3], minlength=128) for m in (a, b)]
    untouched = np.bincount(new[:, 1].astype(int), minlength=128) == 0
    return bool(np.allclose(per_key[0][untouched], per_key[1][untouched], atol=1e-3))


def test_page_and_assets_are_served_with_no_outside_address(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js">' in page.text
    for asset in ("app.js", "style.css"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and len(r.text) > 1000
    for f in STATIC.iterdir():  # nothing is fetched from a CDN or any other host
        text = f.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name only
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), f.name
    schema = client.get("/openapi.json").json()
    assert {"/api/status", "/api/piece", "/api/complete", "/api/infill"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_piece_view_matches_the_file(client, copilot):
    r = client.post("/api/piece", json={"midi": midi_b64(SONG), "name": "C:\\music\\004.mid"})
    assert r.status_code == 200, r.text[:300]
    v = r.json()
    ids = copilot.read(SONG).ids
    assert v["bars"] == len(copilot.tok.structure.bar_starts(ids))
    assert v["name"] == "004.mid"  # only the base name survives, never a path
    notes = np.array(v["notes"])
    m = notes[:, [0, 2, 3, 1]]  # as _notes: onset, pitch, velocity, duration
    assert _same(m[np.lexsort(m[:, :3].T[::-1])], _notes(SONG), m[:0])
    for key in ("bar_beats", "bar_seconds"):
        assert len(v[key]) == v["bars"] + 1 and np.all(np.diff(v[key]) > 0)
    assert np.all(notes[:, 4] >= 0) and np.all(np.diff(notes[:, 4]) >= -1e-6)


def test_complete_keeps_the_piece_and_adds_the_bars(client, copilot):
    body = {"midi": midi_b64(SONG), "bars": 2, "candidates": 3, "seed": 7, "temperature": 0.9}
    r = client.post("/api/complete", json=body)
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    n_bars = len(copilot.tok.structure.bar_starts(copilot.read(SONG).ids))
    assert out["kind"] == "continuation" and out["first_new_bar"] == n_bars + 1
    assert [c["rank"] for c in out["candidates"]] == [1, 2, 3]
    logliks = [c["mean_loglik"] for c in out["candidates"]]
    assert logliks == sorted(logliks, reverse=True)
    orig = _notes(SONG)
    for c in out["candidates"]:
        full = _notes(base64.b64decode(c["midi"]))
        new = full[full[:, 0] >= out["new_from_beat"]]
        before = full[full[:, 0] < out["new_from_beat"]]
        assert _same(before, orig, new)  # the context, note for note
        assert len(new) == c["sidecar"]["notes"] and np.all(new[:, 0] < out["new_to_beat"])
        assert len(_notes(base64.b64decode(c["new_midi"]))) == len(new)
        assert c["view"]["bars"] == n_bars + 2
    again = client.post("/api/complete", json=body).json()
    assert [c["midi"] for c in again["candidates"]] == [c["midi"] for c in out["candidates"]]


def test_infill_rewrites_only_the_gap(client):
    body = {"midi": midi_b64(SONG), "first_bar": 5, "last_bar": 6, "candidates": 2, "seed": 3}
    r = client.post("/api/infill", json=body)
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    assert out["kind"] == "infill" and out["first_new_bar"] == 5 and out["new_bars"] == 2
    a, b = out["new_from_beat"], out["new_to_beat"]
    orig = _notes(SONG)
    for c in out["candidates"]:
        full = _notes(base64.b64decode(c["midi"]))
        outside = (full[:, 0] < a) | (full[:, 0] >= b)
        kept = orig[(orig[:, 0] < a) | (orig[:, 0] >= b)]
        assert _same(full[outside], kept, full[~outside])
        assert c["sidecar"]["kind"] == "infill"


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/api/piece", {"midi": "not base64!"}, 400, "not valid base64"),
        ("/api/piece", {"midi": base64.b64encode(b"hello world").decode()}, 400, "not a MIDI"),
        ("/api/piece", {"midi": ""}, 400, "empty"),
        ("/api/piece", {"midi": base64.b64encode(b"MThd\0\0\0\6garbage").decode()}, 400, "MIDI"),
        ("/api/piece", None, 422, "midi: Field required"),
        ("/api/complete", {"bars": 0}, 422, "bars"),
        ("/api/complete", {"bars": 99}, 400, "bars: at most 32"),
        ("/api/complete", {"candidates": 5}, 400, "candidates: at most 4"),
        ("/api/complete", {"temperature": -1}, 422, "temperature"),
        ("/api/infill", {"first_bar": 900, "last_bar": 901}, 400, "outside the piece's bars"),
        ("/api/infill", {"first_bar": 3, "last_bar": 2}, 400, "before first_bar"),
        ("/api/infill", {"first_bar": 1, "last_bar": 12}, 400, "at most 8 bars"),
    ],
)
def test_bad_requests_get_one_clear_line(client, path, body, status, words):
    full = {"midi": midi_b64(SONG), **body} if body is not None else {"name": "x.mid"}
    if path == "/api/infill":
        full = {"first_bar": 1, "last_bar": 1, **full}
    r = client.post(path, json=full)
    assert r.status_code == status, r.text[:300]
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and words in detail


def test_a_piece_with_a_note_hours_away_is_refused(client):
    from symusic import Note, Score, Track

    score = Score(480)
    track = Track(program=0)
    track.notes.extend([Note(0, 480, 60, 80), Note(480 * 20_000, 480, 62, 80)])
    score.tracks.append(track)
    r = client.post("/api/piece", json={"midi": base64.b64encode(score.dumps_midi()).decode()})
    assert r.status_code == 400 and "20001 beats long; at most 8000" in r.json()["detail"]


def test_oversized_uploads_are_refused_before_parsing(client):
    big = base64.b64encode(b"MThd" + bytes(300_000)).decode()
    r = client.post("/api/piece", json={"midi": big})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunks():  # no Content-Length: the cap counts the bytes as they arrive
        yield b'{"midi": "'
        for _ in range(40):
            yield b"A" * 10_000
        yield b'"}'

    r = client.post("/api/piece", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    # Under the body cap but over the MIDI cap once decoded.
    mid = base64.b64encode(b"MThd" + bytes(210_000)).decode()
    r = client.post("/api/piece", json={"midi": mid})
    assert r.status_code == 400 and "MB this server accepts" in r.json()["detail"]


def test_twenty_concurrent_users_are_all_answered(copilot):
    """20 requests at once on loopback: each gets 200 with candidates or 503 with Retry-After
    (never a crash or a hang), the server stays up, and clients that honour Retry-After all
    get their music."""
    limits = ServeLimits(queue=3)
    body = {"midi": midi_b64(POP909 / "003" / "003.mid"), "bars": 1, "candidates": 2}
    with LiveServer(web_app(copilot, limits)) as url:

        def once(seed: int) -> tuple[int, dict, dict]:
            return post(f"{url}/api/complete", {**body, "seed": seed})

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(once, range(20)))
        codes = [a[0] for a in answers]
        assert set(codes) <= {200, 503} and codes.count(200) >= 1 + limits.queue
        for code, data, headers in answers:
            if code == 200:
                assert len(data["candidates"]) == 2
            else:
                assert int(headers["retry-after"]) >= 1 and "busy" in data["detail"]

        def patient(seed: int) -> int:
            for _ in range(60):
                code, data, headers = once(seed)
                if code != 503:
                    return code
                time.sleep(min(int(headers["retry-after"]), 2))
            return 503

        with ThreadPoolExecutor(20) as pool:
            assert list(pool.map(patient, range(20))) == [200] * 20
        status = get(f"{url}/api/status")
        assert status["busy"] is False and status["waiting"] == 0
