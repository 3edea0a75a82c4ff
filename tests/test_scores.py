"""Scores: MusicXML written by music21 (`pianomuse.notation`) and read back by a second
library (partitura) note for note on the tokenizer's grid, valid against the MusicXML 4.0
schema; triplets, ties and voices; the fallback for rhythms the engraver cannot lay out; and
`--outputs score,new_score` on the command line."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import POP909, SONGS, aligned_song
from pianomuse.cli import app
from pianomuse.copilot.score import read_score
from pianomuse.notation import ScoreNotes, musicxml, svg
from pianomuse.tokenizer import PianoTokenizerV2, load_score, notes_in_beats

SCHEMA = Path(__file__).parent / "data" / "musicxml"
GRID = 24  # positions a beat of tokenizer version 2


@pytest.fixture(scope="module")
def schema():
    from lxml import etree

    text = (SCHEMA / "musicxml.xsd").read_text()
    for name in ("xml", "xlink"):  # the imports, pointed at the local stand-ins
        text = text.replace(
            f"http://www.musicxml.org/xsd/{name}.xsd", (SCHEMA / f"{name}.xsd").as_uri()
        )
    return etree.XMLSchema(etree.fromstring(text.encode(), base_url=SCHEMA.as_uri() + "/"))


def _valid(schema, xml: bytes) -> bool:
    from lxml import etree

    parser = etree.XMLParser(load_dtd=False, no_network=True, resolve_entities=False)
    ok = schema.validate(etree.fromstring(xml, parser))
    assert ok, schema.error_log.last_error
    return ok


def _read_back(xml: bytes, tmp_path: Path) -> Counter:
    """(onset, duration, pitch) on the grid of every note partitura reads (ties merged)."""
    import partitura

    path = tmp_path / "back.musicxml"
    path.write_bytes(xml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # partitura warns of directions it does not model
        notes = partitura.load_musicxml(str(path)).note_array()
    q = lambda x: np.round(np.asarray(x, float) * GRID).astype(int)  # noqa: E731
    return Counter(zip(q(notes["onset_quarter"]).tolist(), q(notes["duration_quarter"]).tolist(),
                       notes["pitch"].tolist(), strict=True))  # fmt: skip


def _opening(name: str, bars: int = 16) -> ScoreNotes:
    """A POP909 song's first bars as tokenizer v2 reads them (its grid, parts and chords)."""
    return read_score(PianoTokenizerV2(), aligned_song(name), bars=bars)


def _wanted(s: ScoreNotes) -> Counter:
    q = lambda x: np.round(np.asarray(x, float) * s.grid).astype(int)  # noqa: E731
    return Counter(zip(q(s.onset).tolist(), np.maximum(q(s.duration), 1).tolist(),
                       s.pitch.tolist(), strict=True))  # fmt: skip


@pytest.mark.parametrize("name", SONGS)
def test_a_song_opening_reads_back_note_for_note_and_is_valid_musicxml(name, schema, tmp_path):
    s = _opening(name)
    xml, simplified = musicxml(s, rhythm="exact")
    assert simplified == []
    want, got = _wanted(s), _read_back(xml, tmp_path)
    assert sum((want & got).values()) >= 0.99 * sum(want.values()) and len(want) > 50
    assert _valid(schema, xml)


def test_triplets_ties_voices_chords_key_and_the_seam_mark(schema, tmp_path):
    """Eighth-note triplets stay triplets; a note over the bar line is tied; a held note under
    moving ones is a second voice; the chord symbols, key, tempo and mark are in the file."""
    onset = np.array([0, 1 / 3, 2 / 3, 1, 3, 0, 4, 4.5])
    duration = np.array([1 / 3, 1 / 3, 1 / 3, 2, 3, 4, 1, 0.5])
    pitch = np.array([72, 74, 76, 77, 79, 60, 48, 50])
    s = ScoreNotes(onset, duration, pitch, np.zeros(8, bool), [(0.0, 4, 4)], 8.0, 96.0, GRID,
                   key="E minor", chords=[(0.0, "Em"), (4.0, "Bb7/D")],
                   marks=[(4.0, "new bars")], title="test")  # fmt: skip
    xml, simplified = musicxml(s)  # readable: these are sixteenths and triplets already
    assert simplified == [] and _valid(schema, xml)
    assert _read_back(xml, tmp_path) == _wanted(s)
    root = ET.fromstring(xml)
    actual = [int(e.text) for e in root.iter("actual-notes")]
    assert actual.count(3) >= 3  # the three triplet eighths
    assert len([t for t in root.iter("tie") if t.get("type") == "start"]) >= 1  # 79 over bar 1
    assert len({e.text for e in root.iter("voice")}) >= 2
    assert [e.text for e in root.iter("root-step")] == ["E", "B"]
    assert [e.text for e in root.iter("root-alter")] == ["-1"]
    assert [e.text for e in root.iter("fifths")][:1] == ["1"]
    assert [e.text for e in root.iter("rehearsal")] == ["new bars"]
    assert float(next(root.iter("sound")).get("tempo")) == 96
    assert len(list(root.iter("staff"))) > 0  # a grand staff: notes name their staff


def test_rhythms_the_engraver_cannot_lay_out_fall_back_to_sixteenths(schema, tmp_path):
    """A grid of 1,000 positions a beat is beyond MusicXML's durations: the score is still
    written, on sixteenth notes, and says so."""
    onset = np.array([0, 0.001, 0.004, 1.0])
    s = ScoreNotes(onset, np.array([0.001, 0.003, 0.9, 1.0]), np.array([60, 62, 64, 65]),
                   np.zeros(4, bool), [(0.0, 4, 4)], 4.0, 120.0, 1000)  # fmt: skip
    xml, simplified = musicxml(s, rhythm="exact")
    assert simplified == [
        "rhythms quantised to sixteenth notes (MusicXMLExportException at the file's grid)"
    ]
    assert _valid(schema, xml)
    assert sorted(p for _, _, p in _read_back(xml, tmp_path).elements()) == [60, 62, 64, 65]


def test_the_score_is_drawn_as_svg_with_its_notes():
    """Every note of the MusicXML is a note of the picture (a tied note is two)."""
    s = _opening(SONGS[0], bars=4)
    xml = musicxml(s, rhythm="exact")[0]
    written = [n for n in ET.fromstring(xml).iter("note") if n.find("rest") is None]
    root = ET.fromstring(svg(xml))
    drawn = [e for e in root.iter() if e.get("class", "").split()[:1] == ["note"]]
    assert len(drawn) == len(written) > len(s.onset) > 10
    # A server engraves on worker threads: the same picture there.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        again = ET.fromstring(pool.submit(svg, xml).result())
    assert len([e for e in again.iter() if "note" in e.get("class", "").split()]) == len(drawn)


def test_complete_writes_the_scores_it_is_asked_for(trained_model, tmp_path, schema):
    out = tmp_path / "c"
    song = POP909 / SONGS[1] / f"{SONGS[1]}.mid"
    args = ["complete", str(song), "--model", str(trained_model), "--bars", "2",
            "--candidates", "1", "-o", str(out)]  # fmt: skip
    r = CliRunner().invoke(app, [*args, "--outputs", "score,new_score,new"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        "candidate_1.musicxml",
        "candidate_1_continuation.mid",
        "candidate_1_continuation.musicxml",
    ]
    whole, new = (out / "candidate_1.musicxml").read_bytes(), out / "candidate_1_continuation"
    assert _valid(schema, whole) and _valid(schema, new.with_suffix(".musicxml").read_bytes())
    assert [e.text for e in ET.fromstring(whole).iter("rehearsal")] == ["new bars"]
    n = notes_in_beats(load_score(new.with_suffix(".mid")))
    got = _read_back(new.with_suffix(".musicxml").read_bytes(), tmp_path)
    q = lambda x: np.round(np.asarray(x) * GRID).astype(int)  # noqa: E731
    assert sorted(p for _, _, p in got.elements()) == sorted(n["pitch"].tolist())
    assert sorted(o for o, _, _ in got.elements()) == sorted(q(n["onset"]).tolist())
    bad = CliRunner().invoke(app, [*args, "--outputs", "roll,pdf"])
    assert bad.exit_code == 1 and "--outputs takes names from whole, new, roll" in bad.output


def test_the_web_api_engraves_a_piece(trained_model, schema):
    """POST /api/score: the MusicXML (valid) and its SVG; a key it cannot read is one line."""
    import base64

    from fastapi.testclient import TestClient

    from pianomuse.copilot import Copilot
    from pianomuse.serve import web_app

    client = TestClient(web_app(Copilot(trained_model)), base_url="http://localhost")
    midi = base64.b64encode((POP909 / SONGS[0] / f"{SONGS[0]}.mid").read_bytes()).decode()
    r = client.post("/api/score", json={"midi": midi, "name": "x.mid", "key": "G major"})
    assert r.status_code == 200, r.text
    out = r.json()
    xml = base64.b64decode(out["musicxml"])
    assert _valid(schema, xml)
    assert (
        len(out["simplified"]) == 1
        and "onsets moved to sixteenths or triplets" in out["simplified"][0]
    )
    assert [e.text for e in ET.fromstring(xml).iter("fifths")][:1] == ["1"]
    svg_notes = [
        e for e in ET.fromstring(out["svg"]).iter() if "note" in e.get("class", "").split()
    ]
    assert len(svg_notes) >= len(
        [n for n in ET.fromstring(xml).iter("note") if n.find("rest") is None]
    )
    bad = client.post("/api/score", json={"midi": midi, "key": "H major"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("key")


@pytest.mark.parametrize("name", SONGS[:3])
def test_a_readable_score_keeps_to_sixteenths_and_triplets(name, schema, tmp_path):
    """The default rhythm: every onset on a sixteenth or an eighth-note triplet, no note moved
    by more than a 24th of a beat past half a step, and the file says so and reads back as
    those notes exactly."""
    from pianomuse.notation import readable

    s = _opening(name)
    r, moved = readable(s)
    twelfths = r.onset * 12
    assert np.allclose(twelfths, np.round(twelfths))
    on = np.round(twelfths).astype(int) % 12
    assert np.all((on % 3 == 0) | (on % 4 == 0))
    assert np.abs(r.onset - s.onset).max() <= 1 / 6 + 1 / 24
    xml, simplified = musicxml(s)
    assert simplified == [f"{moved} of {len(s.onset)} onsets moved to sixteenths or triplets"]
    assert _valid(schema, xml)
    want = set(zip(np.round(r.onset * GRID).astype(int).tolist(),
                   np.round(r.duration * GRID).astype(int).tolist(), r.pitch.tolist(),
                   strict=True))  # fmt: skip  # notes made one by the move count once
    got = set(_read_back(xml, tmp_path))
    assert len(want & got) >= 0.99 * len(want)
