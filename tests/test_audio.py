"""Sound: the bundled grand piano (one preset, in tune), the sustain pedal, and the audio of
generated pieces — its length, and its notes' onsets found by a detector in the sound
(`onsets.py`) — through `--outputs audio,mp3` and POST /api/audio."""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import numpy as np
import soundfile
from symusic import Note, Pedal, Score, Track
from typer.testing import CliRunner

from conftest import POP909
from onsets import onsets, precision, recall
from pianomuse.audio import PEAK, SAMPLE_RATE, SOUNDFONT, audio_file, render
from pianomuse.cli import app
from pianomuse.tokenizer import (
    cut_score,
    load_score,
    midi_bytes,
    notes_in_beats,
    seconds_at,
    write_midi_atomic,
)
from pianomuse.tokenizer.synth import sounding_seconds, sustained

ROOT = Path(__file__).resolve().parent.parent
# The longest the bundled piano rings after a key (or the pedal) is released: its loudest
# layer's release envelope, 316 timecents (2 ** (316 / 1200) s).
RELEASE_S = 1.2


def _piece(notes: list[tuple[int, int, int]], pedals=(), tpq: int = 480) -> Score:
    s = Score(tpq)
    track = Track(program=0)
    for t, d, p in notes:
        track.notes.append(Note(t, d, p, 90))
    for t, d in pedals:
        track.pedals.append(Pedal(t, d))
    s.tracks.append(track)
    return s


def test_the_pedal_holds_released_notes_until_it_is_lifted_or_the_key_is_struck_again():
    s = _piece([(0, 240, 60), (0, 240, 64), (480, 100, 60), (2000, 100, 67)], pedals=[(0, 960)])
    got = sorted((n.time, n.end, n.pitch) for n in sustained(s).tracks[0].notes)
    # C4 is cut by its own restrike at 480; E4 rings to the pedal's release at 960; the second
    # C4 too; G4, played after the pedal, keeps its own length.
    assert got == [(0, 480, 60), (0, 960, 64), (480, 960, 60), (2000, 2100, 67)]
    assert not len(sustained(s).tracks[0].pedals)
    assert render(midi_bytes(Score(480))).shape == (0, 2)  # no notes: no sound, no error
    # A cut piece keeps the pedal only up to the cut.
    cut = cut_score(_piece([(0, 100, 60)], pedals=[(0, 96_000)]), 1920)
    assert [(p.time, p.end) for p in cut.tracks[0].pedals] == [(0, 1920)]


def _extractor():
    spec = importlib.util.spec_from_file_location("extract", ROOT / "scripts/extract_piano_sf2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundled_soundfont_is_one_grand_piano_and_plays_in_tune():
    ex = _extractor()
    data = SOUNDFONT.read_bytes()
    body = ex.chunks(data, 12, len(data))
    presets = ex.table(ex.chunks(body["pdta"], 0, len(body["pdta"])), "phdr")
    assert [
        (name.rstrip(b"\0").decode(), bank, program) for name, program, bank, *_ in presets[:-1]
    ] == [("Yamaha Grand Piano", 0, 0)]
    assert len(data) < 10e6  # installed with the package
    for pitch in (33, 45, 57, 69, 81, 93):  # A1..A6
        x = render(midi_bytes(_piece([(0, 960, pitch)])))[2000 : 2000 + SAMPLE_RATE // 2]
        want = 440 * 2 ** ((pitch - 69) / 12)
        # The strongest frequency within a major third of the note's, on a 8x padded FFT
        # (1/4 Hz bins): a real piano is tuned a few cents wide of equal temperament (its
        # treble sharp, its bass flat); a sample played from the wrong root key, as symusic
        # plays FluidR3's own file, is off by 200 cents or more.
        x = x.mean(axis=1) * np.hanning(len(x))
        spectrum = np.abs(np.fft.rfft(x, 8 * len(x)))
        freq = np.fft.rfftfreq(8 * len(x), 1 / SAMPLE_RATE)
        near = (freq > want * 0.8) & (freq < want * 1.25)
        cents = 1200 * np.log2(freq[near][spectrum[near].argmax()] / want)
        assert abs(cents) < 30, (pitch, cents)


def _check_sound(samples: np.ndarray, sr: int, midi: Path, ripple: float = 1e-3) -> None:
    """The sound of a MIDI file: its length, level (a lossy codec's `ripple` above the peak
    written), and the onsets of its notes."""
    score = load_score(midi)
    n = notes_in_beats(score)
    seconds = sounding_seconds(score)
    assert sr == SAMPLE_RATE and samples.shape[1] == 2
    assert seconds <= len(samples) / sr <= seconds + RELEASE_S + 0.1, (len(samples) / sr, seconds)
    assert 0.05 < np.abs(samples).max() <= PEAK + ripple
    found = onsets(samples, sr)
    notes_s = seconds_at(score, n["onset"])
    assert recall(notes_s, found) >= 0.9, recall(notes_s, found)
    assert precision(notes_s, found) >= 0.8, precision(notes_s, found)


def test_complete_writes_the_sound_of_the_whole_piece(trained_model, tmp_path, monkeypatch):
    """`--outputs audio,mp3`: a generated continuation of a pedalled opening (song 002's
    first 8 bars) as WAV and MP3, from one synthesis, each as long as the piece sounds (plus
    the release), with ≥ 90 % of its notes' onsets found in the sound within 50 ms."""
    import pianomuse.audio

    played = []
    real = pianomuse.audio.render
    monkeypatch.setattr(pianomuse.audio, "render", lambda src: (played.append(1), real(src))[1])
    song = load_score(POP909 / "002" / "002.mid")
    opening = tmp_path / "opening.mid"
    write_midi_atomic(cut_score(song, song.tpq * 4 * 8), opening)
    assert any(len(t.pedals) for t in load_score(opening).tracks)
    out = tmp_path / "c"
    r = CliRunner().invoke(app, ["complete", str(opening), "--model", str(trained_model),
                                 "--bars", "4", "--candidates", "1", "-o", str(out),
                                 "--outputs", "whole,audio,mp3"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        "candidate_1.mid", "candidate_1.mp3", "candidate_1.wav"
    ]  # fmt: skip
    assert len(played) == 1
    whole = out / "candidate_1.mid"
    assert len(notes_in_beats(load_score(whole))["pitch"]) > len(
        notes_in_beats(load_score(opening))["pitch"]
    )
    wav, sr = soundfile.read(out / "candidate_1.wav", dtype="float32")
    assert soundfile.info(out / "candidate_1.wav").subtype == "PCM_16"
    _check_sound(wav, sr, whole)
    mp3, sr = soundfile.read(out / "candidate_1.mp3", dtype="float32")
    assert (out / "candidate_1.mp3").stat().st_size < (out / "candidate_1.wav").stat().st_size / 5
    assert abs(len(mp3) - len(wav)) / sr < 0.1  # the encoder's padding, no more
    _check_sound(mp3, sr, whole, ripple=0.02)


def test_the_web_api_plays_a_piece(trained_model, tmp_path):
    """POST /api/audio: the sound file itself, as the API says; a piece too long to render
    is one line, refused before any sound is made."""
    from fastapi.testclient import TestClient

    from pianomuse.copilot import Copilot
    from pianomuse.serve import web_app

    client = TestClient(web_app(Copilot(trained_model)), base_url="http://localhost")
    piece = tmp_path / "piece.mid"
    song = load_score(POP909 / "001" / "001.mid")
    write_midi_atomic(cut_score(song, song.tpq * 4 * 4), piece)
    midi = base64.b64encode(piece.read_bytes()).decode()
    r = client.post("/api/audio", json={"midi": midi, "name": "x.mid", "format": "wav"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    samples, sr = soundfile.read(io.BytesIO(r.content), dtype="float32")
    assert np.array_equal(
        samples, soundfile.read(io.BytesIO(audio_file(piece)), dtype="float32")[0]
    )
    _check_sound(samples, sr, piece)
    assert client.post("/api/audio", json={"midi": midi, "format": "ogg"}).status_code == 422
    # One note, forty minutes in: within the file limits, beyond what audio is written for.
    late = tmp_path / "late.mid"
    write_midi_atomic(_piece([(480 * 80 * 60, 480, 60)]), late)
    long = base64.b64encode(late.read_bytes()).decode()
    bad = client.post("/api/audio", json={"midi": long, "format": "wav"})
    assert bad.status_code == 400
    assert bad.json()["detail"] == (
        "the piece sounds for 40 minutes: audio is written for pieces of up to 30"
    )
