"""Tokenizer v2: chords, parts and triplets survive, windows carry the harmony in force, and
data or models of another version are refused with one line."""

from __future__ import annotations

import numpy as np
import pytest
from symusic import Note, Score, Tempo, TimeSignature, Track
from typer.testing import CliRunner

from conftest import POP909, SONGS, aligned_song
from pianomuse.cli import app
from pianomuse.data.samples import SampleStream, transpose
from pianomuse.data.shards import TokenShards
from pianomuse.errors import UserError
from pianomuse.harmony import Chord, parse_harte, parse_label, read_chord_file, recognise
from pianomuse.tokenizer import (
    Kind,
    PianoTokenizer,
    PianoTokenizerV2,
    Tokenizer,
    notes_in_beats,
    round_trip,
)
from pianomuse.tokenizer.align import CHORD_MARKER


@pytest.fixture(scope="module")
def tok2() -> PianoTokenizerV2:
    return PianoTokenizerV2()


def _chords(score: Score) -> list[tuple[float, Chord]]:
    """(beat, chord) of a score's chord markers."""
    return [
        (m.time / score.tpq, parse_label(m.text.removeprefix(CHORD_MARKER)))
        for m in score.markers
        if m.text.startswith(CHORD_MARKER)
    ]


def _in_force(changes: list[tuple[float, Chord]], beat: float) -> Chord | None:
    before = [c for t, c in changes if t <= beat + 1e-9]
    return before[-1] if before else None


def test_harte_labels_and_our_labels():
    assert parse_harte("B:maj") == Chord(11, "maj")
    assert parse_harte("A:min7/b7") == Chord(9, "min7", 7)
    assert parse_harte("G:sus4(b7)") == Chord(7, "7sus4")
    assert parse_harte("Gb:maj/3") == Chord(6, "maj", 10)
    assert parse_harte("N").root is None
    for c in (Chord(0, "maj", 4), Chord(9, "hdim7"), Chord(None)):
        assert parse_label(c.label()) == c


def test_the_recogniser_hears_plain_chords_and_real_songs():
    def notes(*chords: tuple[int, ...]) -> dict[str, np.ndarray]:
        rows = [(2.0 * i, 2.0, p) for i, c in enumerate(chords) for p in c]
        on, dur, pitch = (np.array(x) for x in zip(*rows, strict=True))
        return {"onset": on, "duration": dur, "pitch": pitch.astype(np.int64)}

    got = recognise(notes((48, 52, 55), (52, 55, 60), (45, 57, 60, 64)), np.array([0, 4, 8.0]))
    assert [c for _, c in got] == [Chord(0, "maj"), Chord(0, "maj", 4), Chord(9, "min")]
    # On real songs, half-bar by half-bar, against the annotations (quarter-beat lattice).
    root = total = 0
    for name in SONGS:
        song = aligned_song(name)
        truth = _chords(song)
        n = notes_in_beats(song)
        lines = np.arange(0, n["onset"].max() + 8, 4.0)
        guess = recognise(n, lines)
        for t in np.arange(0, lines[-1], 0.25):
            a, b = _in_force(truth, t), _in_force(guess, t)
            if a is not None and a.root is not None:
                total += 1
                root += b is not None and b.root == a.root
    assert total > 1000 and root / total > 0.8


def test_chords_and_parts_survive_prepare_windows_and_decode(prepared):
    shards = TokenShards(prepared, "train")
    tok, st = shards.tokenizer, shards.tokenizer.structure
    assert tok.version == 2
    names = [f["path"].split("/")[0] for f in _manifest(prepared) if f["split"] == "train"]
    stream = SampleStream(shards, max_seq_len=256, seed=1)
    items = stream.items(0)
    checked = 0
    for i in range(0, len(items), 5):
        song_i, start = (int(x) for x in items[i])
        song = shards.song(song_i)
        truth = aligned_song(names[song_i])
        whole = tok.decode(song)
        window = stream.sample(0, i).ids
        k = st.kinds(window)
        assert tok.tokens_errors(window) == 0.0
        # The chord in force at the window's first bar is stated at its start ...
        bar = int(np.searchsorted(st.bar_starts(song), start))
        beat0 = st.bar_lines(song)[bar]
        want = _in_force(_chords(whole), beat0)
        if want is not None:
            assert (k[:8] == Kind.CHORD).any()
            assert _in_force(_chords(tok.decode(window)), 0.0) == want
        # ... and the annotation is what the tokens carry, bar for bar.
        assert _in_force(_chords(truth), beat0 + 0.01) == want
        # Parts: every bar's notes come in blocks, Melody then Accompaniment.
        decoded = tok.decode(window)
        assert {t.name for t in decoded.tracks} <= {"Melody", "Accompaniment"}
        checked += 1
    assert checked > 10
    # Decoded whole songs keep every note's part.
    original = tok.piano_score(aligned_song(names[0]))
    back = tok.decode(shards.song(0))
    for part in ("Melody", "Accompaniment"):
        a = sum(t.note_num() for t in original.tracks if t.name == part)
        b = sum(t.note_num() for t in back.tracks if t.name == part)
        assert a > 0 and abs(a - b) <= 0.01 * a


def _manifest(prepared):
    import json

    return json.loads((prepared / "manifest.json").read_text())["files"]


def _two_parts(melody: list[tuple[float, int]], piano: list[tuple[float, int]]) -> Score:
    s = Score(480)
    s.tempos = [Tempo(0, 100.0)]
    s.time_signatures = [TimeSignature(0, 4, 4)]
    for name, notes in (("MELODY", melody), ("PIANO", piano)):
        t = Track(name=name, program=0)
        for beat, pitch in notes:
            t.notes.append(Note(int(beat * 480), 240, pitch, 80))
        s.tracks.append(t)
    return s


def test_a_two_part_unison_survives(tok2):
    # The melody doubles the accompaniment's C5 at beat 1: one key, two parts, both kept.
    s = _two_parts([(0, 72), (1, 76), (2, 79)], [(0, 48), (1, 76), (2, 55), (3, 60)])
    back = tok2.decode(tok2.encode(s))
    by_part = {t.name: sorted((n.time / 480, n.pitch) for n in t.notes) for t in back.tracks}
    assert by_part["Melody"] == [(0, 72), (1, 76), (2, 79)]
    assert by_part["Accompaniment"] == [(0, 48), (1, 76), (2, 55), (3, 60)]
    # Version 1 merges the parts and keeps one of the two.
    v1 = PianoTokenizer().decode(PianoTokenizer().encode(s))
    assert sum(n.pitch == 76 for n in v1.tracks[0].notes) == 1
    # A plain piano file has no part and costs no Part token.
    plain = Score(480)
    plain.tracks.append(Track(name="Piano", program=0))
    plain.tracks[0].notes.extend(s.tracks[1].notes)
    ids = tok2.encode(plain)
    assert not (tok2.structure.kinds(ids) == Kind.PART).any()
    assert [t.name for t in tok2.decode(ids).tracks] == ["Piano"]


def test_a_triplet_passage_survives_exactly(tok2):
    # Eighth-note triplets, then sixteenth triplets, then 32nd notes: every onset exact.
    beats = (
        [i / 3 for i in range(6)] + [2 + i / 6 for i in range(6)] + [3 + i / 8 for i in range(8)]
    )
    s = _two_parts([], [(b, 60 + i % 12) for i, b in enumerate(beats)])
    s.tracks = [t for t in s.tracks if len(t.notes)]
    back = tok2.decode(tok2.encode(s))
    onsets = sorted(n.time / 480 for t in back.tracks for n in t.notes)
    assert np.allclose(onsets, sorted(round(b * 480) / 480 for b in beats), atol=1e-9)
    assert round_trip(tok2, s).exact == len(beats)
    # The 32nd-note grid of version 1 cannot hold the triplets.
    assert round_trip(PianoTokenizer(), s).exact < len(beats) - 6


def test_transposition_moves_chords_with_the_notes(tok2):
    song = aligned_song("002")
    ids = tok2.encode(song)
    up = transpose(tok2.structure, ids, 3)
    a, b = _chords(tok2.decode(ids)), _chords(tok2.decode(up))
    assert len(a) == len(b) > 10
    for (ta, ca), (tb, cb) in zip(a, b, strict=True):
        assert ta == tb and ca.quality == cb.quality
        assert (ca.root + 3) % 12 == cb.root
        assert (ca.bass is None) == (cb.bass is None)
    pa = notes_in_beats(tok2.decode(ids))["pitch"]
    pb = notes_in_beats(tok2.decode(up))["pitch"]
    assert np.array_equal(np.sort(pa) + 3, np.sort(pb))


def test_another_version_is_refused_with_one_line(prepared, tmp_path):
    from pianomuse.bundled import default_model

    v1, v2 = PianoTokenizer(), PianoTokenizerV2()
    assert v1.hash != v2.hash and v1.hash == "beda07d33ffd1e72"  # version 1's hash kept
    assert Tokenizer.from_config(v1.config()).version == 1
    assert Tokenizer.from_config(v2.config()).hash == v2.hash
    with pytest.raises(UserError, match="v2"):
        v2.check_hash(v1.hash, what="the model")
    # The bundled (version 1) model on data prepared with version 2.
    r = CliRunner().invoke(
        app, ["eval", "--model", str(default_model()), "--data-path", str(prepared)]
    )
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "tokenizer" in r.output and "v2" in r.output and "Traceback" not in r.output
    # ... and on a MIDI folder, which it reads with its own version.
    r = CliRunner().invoke(app, ["eval", "--data-path", str(POP909 / "006"), "--samples", "0"])
    assert r.exit_code == 0, r.output
    # A model and a tokenizer of different versions.
    from pianomuse.copilot import Copilot
    from pianomuse.model import load_model

    with pytest.raises(UserError):
        Copilot(load_model(default_model()), v2)


def test_chord_annotations_come_from_the_files(tmp_path):
    chords = read_chord_file(POP909 / "001" / "chord_midi.txt")
    assert len(chords) > 50 and chords[0][0] < chords[-1][0]
    song = aligned_song("001")
    marked = [(t, c) for t, c in _chords(song) if c.root is not None]
    assert marked[0][1] == parse_harte("B:maj")  # the file's first chord after its N
