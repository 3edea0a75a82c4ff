"""Beat alignment: performed timing onto a grid of bars and beats."""

from __future__ import annotations

import numpy as np
from symusic import Note, Score, Tempo, Track
from typer.testing import CliRunner

from conftest import POP909
from pianomuse.cli import app
from pianomuse.tokenizer import (
    BeatTrack,
    align_to_beats,
    load_score,
    notes_in_beats,
    onset_grid_share,
    read_beats,
)


def _performance(beat_times: np.ndarray, beat_positions: list[float]) -> Score:
    """Notes played exactly at fractional beat positions of an uneven beat track."""
    s = Score(480)
    s.tempos.append(Tempo(0, 120.0))  # 1 beat of the file = 0.5 s, unrelated to the music
    t = Track(program=0)
    idx = np.arange(len(beat_times))
    for i, q in enumerate(beat_positions):
        sec = np.interp(q, idx, beat_times)
        t.notes.append(Note(int(round(sec / 0.5 * 480)), 60, 60 + i % 12, 80))
    s.tracks.append(t)
    return s


def test_notes_land_on_their_beats_and_bars_follow_downbeats():
    rng = np.random.default_rng(0)
    # 15 beats, tempo drifting around 100 bpm; bars of 4, then an irregular bar of 3, then 4.
    times = 0.37 + np.cumsum(np.r_[0, 0.6 + 0.05 * rng.standard_normal(14)])
    down = np.zeros(15, dtype=bool)
    down[[1, 5, 8, 12]] = True  # one pickup beat, bars of 4, 3, 4 beats
    positions = [0.5, 1.0, 2.25, 5.0, 6.5, 8.0, 9.75, 12.0, 13.5]
    aligned = align_to_beats(_performance(times, positions), BeatTrack(times, down))
    onsets = notes_in_beats(aligned)["onset"]
    # The pickup beat 0 becomes beat 3 of a 4-beat lead-in bar: coordinate = beat + 3.
    assert np.allclose(onsets, np.array(positions) + 3, atol=1 / 480 * 2)
    sigs = [(ts.time // 480, ts.numerator) for ts in aligned.time_signatures]
    assert sigs == [(0, 4), (8, 3), (11, 4)]  # downbeats 1, 5, 8 land on beats 4, 8, 11
    assert onset_grid_share(aligned) == 1.0
    # The tempo map follows the beats: the aligned file plays at the performance's times.
    played = np.array([n.time for n in aligned.to("second").tracks[0].notes])
    want = np.interp(positions, np.arange(15), times)
    assert np.allclose(played - played[0], want - want[0], atol=0.01)


def test_real_song_moves_onto_the_grid():
    raw = load_score(POP909 / "001" / "001.mid")
    aligned = align_to_beats(raw, read_beats(POP909 / "001" / "beat_midi.txt"))
    assert onset_grid_share(raw) < 0.2
    assert onset_grid_share(aligned) > 0.9
    assert aligned.note_num() == raw.note_num()


def test_align_command(tmp_path):
    out = tmp_path / "aligned.mid"
    song = POP909 / "002"
    r = CliRunner().invoke(
        app, ["align", str(song / "002.mid"), str(song / "beat_midi.txt"), "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000
    assert onset_grid_share(load_score(out)) > 0.9
    bad = CliRunner().invoke(
        app, ["align", str(song / "beat_midi.txt"), str(song / "beat_midi.txt"), "-o", str(out)]
    )
    assert bad.exit_code == 1
    assert "not a MIDI file" in bad.output and "Traceback" not in bad.output
