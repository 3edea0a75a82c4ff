"""Where new music goes: the bars the tokens count, the metre that prevails, the user's file
kept as it was, and seams where no key is struck twice at once."""

from __future__ import annotations

import numpy as np
import pytest
from symusic import ControlChange, Note, Pedal, Score, Tempo, TimeSignature, Track
from typer.testing import CliRunner

from conftest import POP909, aligned_song
from pianomuse.cli import app
from pianomuse.copilot import Copilot, Sampling
from pianomuse.errors import UserError
from pianomuse.tokenizer import load_score, notes_in_beats


@pytest.fixture(scope="module")
def copilot(trained_model):
    return Copilot(trained_model)


def _song_with_metres(sigs: list[tuple[int, int, int]], beats: int = 48) -> Score:
    """The first `beats` beats of a real song (001, aligned, one track) under the given
    time signatures (tick, numerator, denominator), in file order."""
    src = aligned_song("001")
    out = Score(src.tpq)
    out.tempos = [Tempo(0, 90.0)]
    for t, n, d in sigs:
        out.time_signatures.append(TimeSignature(t * src.tpq, n, d))
    track = Track(name="Piano", program=0)
    for tr in src.tracks:
        track.notes.extend(tr.notes.filter(lambda n: n.time < beats * src.tpq))
    track.notes.sort()
    out.tracks.append(track)
    return out


def _bars_of(new_beats: np.ndarray) -> list[float]:
    return np.diff(new_beats).tolist()


def test_continuation_takes_the_prevailing_metre_after_an_irregular_bar(copilot):
    # Song 005, aligned: 4/4 with a 2/4 bar at beats 52-54 (bar 14). Cut right after it.
    song = aligned_song("005")
    cut = 54 * song.tpq
    for tr in song.tracks:
        tr.notes = tr.notes.filter(lambda n: n.time < cut)
    song.tempos = song.tempos.filter(lambda t: t.time < cut)
    song.time_signatures = song.time_signatures.filter(lambda t: t.time < cut)
    piece = copilot.read(song)
    assert piece.metres[-1] == (2, 4) and piece.metres.count((4, 4)) == piece.n_bars - 1
    r = copilot.complete(song, bars=4, candidates=3, sampling=Sampling(seed=2))
    assert r.span.start_tick == cut
    for c in r.candidates:
        assert _bars_of(c.new_beats) == [4.0] * 4  # 16 beats of 4/4, not 8 beats of 2/4
        assert [(t.numerator, t.denominator) for t in c.new.time_signatures] == [(4, 4)]
        assert notes_in_beats(c.new)["onset"].max() < 16
        # The whole file says where the metre changes back: 4/4 from the seam on.
        sigs = [(t.time, t.numerator, t.denominator) for t in c.full.time_signatures]
        assert sigs[-1] == (cut, 4, 4)


# (time signatures in file order, the metre the tokens read, bar length in beats)
MAPPED = [
    ([(0, 4, 4), (0, 1, 4)], (1, 4), 1.0),  # two at tick 0 (1 in 8 raw POP909 files)
    ([(0, 1, 4), (0, 4, 4)], (4, 4), 4.0),
    ([(0, 2, 2)], (4, 4), 4.0),  # same length
    ([(0, 8, 4)], (4, 4), 4.0),  # split into two 4/4 bars
    ([(0, 9, 8)], (3, 8), 1.5),  # split into three 3/8 bars
    ([(0, 3, 4), (7, 4, 4)], (4, 4), 4.0),  # a change inside bar 3 moves to its end (beat 9)
]


@pytest.mark.parametrize("sigs, metre, bar_len", MAPPED)
def test_new_music_lands_on_the_bars_the_tokens_count(copilot, sigs, metre, bar_len):
    score = _song_with_metres(sigs)
    piece = copilot.read(score)
    tpq = piece.tpq
    assert piece.metres[-1] == metre
    assert np.all(np.diff(piece.bar_ticks) > 0)
    last_onset = notes_in_beats(score)["onset"].max()
    # The continuation starts at the first bar line after the last onset, not later.
    r = copilot.complete(score, bars=2, candidates=2, sampling=Sampling(seed=1))
    start = r.span.start_tick / tpq
    assert start == piece.bar_ticks[-1] / tpq
    assert last_onset < start <= last_onset + bar_len + 1e-9
    for c in r.candidates:
        assert _bars_of(c.new_beats) == [bar_len] * 2
        new = notes_in_beats(c.full)
        added = len(new["onset"]) - len(notes_in_beats(score)["onset"])
        assert added == c.new.note_num()
        assert np.all(notes_in_beats(c.new)["onset"] < 2 * bar_len)
    # An infill of bars 2-3 removes exactly those bars' notes and fills exactly their span.
    g = copilot.infill(score, 2, 3, candidates=2, sampling=Sampling(seed=1))
    a, b = g.span.start_tick, g.span.end_tick
    assert (a, b) == (piece.bar_ticks[1], piece.bar_ticks[3])
    orig = notes_in_beats(score)
    kept = (orig["onset"] < a / tpq) | (orig["onset"] >= b / tpq)
    for c in g.candidates:
        assert np.sum(c.new_beats[1:] - c.new_beats[:-1]) == (b - a) / tpq
        full = notes_in_beats(c.full)
        outside = (full["onset"] < a / tpq) | (full["onset"] >= b / tpq)
        assert outside.sum() == kept.sum()
        assert np.all(notes_in_beats(c.new)["onset"] < (b - a) / tpq)


@pytest.mark.parametrize("metre", [(7, 8), (5, 8), (13, 16), (11, 8)])
def test_metres_without_an_equivalent_are_refused_with_one_line(
    copilot, trained_model, metre, tmp_path
):
    score = _song_with_metres([(0, 4, 4), (8, *metre)])
    with pytest.raises(UserError, match=f"metre {metre[0]}/{metre[1]}"):
        copilot.complete(score, bars=1, candidates=1)
    path = tmp_path / "odd.mid"
    path.write_bytes(score.dumps_midi())
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app, ["complete", str(path), "--model", str(trained_model), "-o", str(out)]
    )
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert f"{metre[0]}/{metre[1]}" in r.output and "Traceback" not in r.output
    assert not out.exists()


def _chunks(data: bytes) -> list[bytes]:
    pos, out = 14, []
    while pos < len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        out.append(data[pos : pos + 8 + size])
        pos += 8 + size
    return out


def _user_file() -> bytes:
    """A user's file with what a merge would lose: named tracks on other programs, pedals,
    controllers, and a held note that a second part strikes again on the same key."""
    s = Score(384)
    s.tempos = [Tempo(0, 100.0)]
    s.time_signatures = [TimeSignature(0, 3, 4)]
    right = Track(name="Right hand", program=4)
    left = Track(name="Left hand", program=0)
    for i in range(24):
        right.notes.append(Note(i * 384, 700, 72 + (i * 5) % 12, 90))
        left.notes.append(Note(i * 384, 384 * 3, 48 + (i % 3) * 4, 70))
    left.notes.append(Note(23 * 384, 384 * 5, 60, 60))  # held across the end
    right.notes.append(Note(22 * 384, 400, 60, 80))
    left.pedals.append(Pedal(0, 384 * 6))
    left.controls.append(ControlChange(10, 7, 100))
    s.tracks.extend([right, left])
    return bytes(s.dumps_midi())


@pytest.mark.parametrize("source", ["user", "001", "003"])
def test_the_users_file_comes_back_unchanged(copilot, source):
    data = _user_file() if source == "user" else (POP909 / source / f"{source}.mid").read_bytes()
    r = copilot.complete(data, bars=2, candidates=2, sampling=Sampling(seed=3))
    before = load_score(data)
    for c in r.candidates:
        # Byte for byte: the same track chunks, one more, and the header counting it.
        assert c.full_midi[:10] == data[:8] + b"\x00\x01"
        n_tracks = int.from_bytes(data[10:12], "big")
        assert int.from_bytes(c.full_midi[10:12], "big") == n_tracks + len(c.new.tracks)
        assert _chunks(c.full_midi)[:n_tracks] == _chunks(data)
        after = load_score(c.full_midi)
        for a, b in zip(after.tracks, before.tracks, strict=False):
            assert (a.name, a.program) == (b.name, b.program)
            assert a.notes == b.notes and a.pedals == b.pedals and a.controls == b.controls
        assert after.note_num() == before.note_num() + c.new.note_num()
    assert sum(c.new.note_num() for c in r.candidates) > 0


def _overlaps(kept: dict, new: dict, eps: float = 1e-6) -> int:
    """New notes that strike a key while a kept note holds it, or hold a key into a kept
    onset of it."""
    bad = 0
    for o, d, p in zip(new["onset"], new["duration"], new["pitch"], strict=True):
        same = kept["pitch"] == p
        ko, ke = kept["onset"][same], kept["onset"][same] + kept["duration"][same]
        bad += int(np.any((ko < o - eps) & (ke > o + eps)))  # struck while held
        bad += int(np.any((ko >= o - eps) & (ko < o + d - eps)))  # sounding into a kept onset
    return bad


@pytest.mark.parametrize("song", ["001", "002", "004", "006"])
def test_seams_never_overlap_a_key_of_the_kept_music(copilot, song):
    piece = copilot.read(POP909 / song / f"{song}.mid")
    tpq = piece.tpq
    n = notes_in_beats(piece.source)
    gaps = [(b, b + 1) for b in range(3, piece.n_bars - 2, max(piece.n_bars // 6, 2))][:5]
    checked = 0
    for seed in range(4):
        sampling = Sampling(seed=seed, temperature=1.2)
        for first, last in gaps:
            g = copilot.infill(piece, first, last, candidates=4, sampling=sampling)
            a, b = g.span.start_tick / tpq, g.span.end_tick / tpq
            keep = (n["onset"] < a) | (n["onset"] >= b)
            kept = {k: v[keep] for k, v in n.items()}
            for c in g.candidates:
                new = notes_in_beats(c.new)
                new["onset"] = new["onset"] + a
                assert _overlaps(kept, new) == 0, (song, first, seed)
                checked += len(new["onset"])
        r = copilot.complete(piece, bars=1, candidates=4, sampling=sampling, context_bars=4)
        for c in r.candidates:
            new = notes_in_beats(c.new)
            new["onset"] = new["onset"] + r.span.start_tick / tpq
            assert _overlaps(n, new) == 0
    assert checked > 200
