"""Re-timing performed MIDI onto annotated beats, so that bars and positions mean music.

POP909's notes were played along with a recording: they follow the recording's beats, not the
MIDI tick grid. Given the beat times (and which beats are downbeats), every event time t in
seconds is mapped to a beat coordinate by piecewise-linear interpolation between beats; the new
file puts beat i at tick i·tpq, carries a tempo map that follows the beats (so it still plays at
the recording's timing) and has its bar lines on the annotated downbeats, an irregular bar
getting its own time signature.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from symusic import Note, Pedal, Score, Tempo, TextMeta, TimeSignature, Track

from pianomuse.harmony import Chord
from pianomuse.tokenizer.midi_io import MidiInputError

ALIGNED_TPQ = 480
# A marker text "chord C:maj/E" states the chord from its time on (`Chord.label`).
CHORD_MARKER = "chord "
# Bar lengths (in quarter-note beats) that the tokenizer has a TimeSig token for; longer
# irregular bars are split into 4/4 bars and a remainder.
_BAR_BEATS = (1, 2, 3, 4, 5, 6)


@dataclass(frozen=True)
class BeatTrack:
    """Beat times in seconds, increasing, and which of them start a bar."""

    times: np.ndarray  # (M,) float64 seconds
    downbeat: np.ndarray  # (M,) bool

    def __post_init__(self) -> None:
        if len(self.times) < 2:
            raise MidiInputError("a beat track needs at least two beats")
        if np.any(np.diff(self.times) <= 0):
            raise MidiInputError("beat times must be strictly increasing")
        if len(self.downbeat) != len(self.times):
            raise MidiInputError("one downbeat flag per beat is needed")


def read_beats(path: str | os.PathLike) -> BeatTrack:
    """Read a beat file: one beat a line, `time [half-bar-flag] [downbeat-flag]`.

    This is POP909's `beat_midi.txt` layout (the last column marks downbeats). A file with
    only times is taken as a 4/4 grid starting on its first beat.
    """
    try:
        with open(path, encoding="utf-8") as f:
            rows = [ln.split() for ln in f if ln.strip()]
        times = np.array([float(r[0]) for r in rows], dtype=np.float64)
        if rows and len(rows[0]) >= 2:
            down = np.array([float(r[-1]) > 0.5 for r in rows], dtype=bool)
        else:
            down = np.arange(len(times)) % 4 == 0
    except OSError as e:
        raise MidiInputError(f"{path}: cannot read beat file ({e.strerror})") from None
    except (ValueError, IndexError):
        raise MidiInputError(f"{path}: not a beat file (expected 'time flag flag' lines)") from None
    if not down.any():
        down[0] = True
    return BeatTrack(times, down)


def _beat_coordinate(t: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Fractional beat index of times t, linear between beats and extrapolated at both ends."""
    idx = np.arange(len(beats), dtype=np.float64)
    f = np.interp(t, beats, idx)
    first, last = beats[1] - beats[0], beats[-1] - beats[-2]
    f = np.where(t < beats[0], (t - beats[0]) / first, f)
    return np.where(t > beats[-1], len(beats) - 1 + (t - beats[-1]) / last, f)


def _bar_lengths(beats: BeatTrack, lead_beats: int, total_beats: float) -> list[int]:
    """Bar lengths in beats covering [0, total_beats) of the shifted beat axis."""
    down = np.flatnonzero(beats.downbeat)
    bars = [4] * (lead_beats // 4)
    for a, b in zip(down[:-1], down[1:], strict=True):
        n = int(b - a)
        while n > max(_BAR_BEATS):  # a missing downbeat: split into 4/4 bars
            bars.append(4)
            n -= 4
        bars.append(n)
    covered = sum(bars)
    while covered < total_beats:
        bars.append(4)
        covered += 4
    return bars


def align_to_beats(
    score: Score,
    beats: BeatTrack,
    tpq: int = ALIGNED_TPQ,
    chords: list[tuple[float, float, Chord]] | None = None,
) -> Score:
    """A copy of `score` with every event re-timed onto the beat grid (see module docstring).
    Annotated `chords` (start and end in the same seconds as the beats) become chord markers
    at their changes (`CHORD_MARKER`), re-timed the same way."""
    sec = score.to("second")
    onsets = [t.notes.numpy()["time"] for t in sec.tracks if len(t.notes)]
    if not onsets:
        raise MidiInputError("the MIDI file contains no notes")
    first_down = int(np.flatnonzero(beats.downbeat)[0])
    earliest = float(_beat_coordinate(np.array([np.concatenate(onsets).min()]), beats.times)[0])
    # Whole 4/4 bars of lead-in before the first downbeat, enough to hold the pickup notes.
    lead_beats = 4 * math.ceil(max(first_down - min(earliest, first_down), 0) / 4)
    offset = lead_beats - first_down  # beat index i lands on beat coordinate i + offset

    def to_tick(t: np.ndarray) -> np.ndarray:
        q = _beat_coordinate(np.asarray(t, dtype=np.float64), beats.times) + offset
        return np.maximum(np.round(q * tpq), 0).astype(np.int64)

    out = Score(tpq)
    end_tick = 0
    for tr in sec.tracks:
        new = Track(name=tr.name, program=tr.program, is_drum=tr.is_drum)
        n = tr.notes.numpy()
        if len(n["time"]):
            start = to_tick(n["time"])
            end = np.maximum(to_tick(n["time"] + n["duration"]), start + 1)
            end_tick = max(end_tick, int(end.max()))
            new.notes = Note.from_numpy(
                start.astype(np.int32),
                (end - start).astype(np.int32),
                n["pitch"],
                n["velocity"],
                "tick",
            )
        for p in tr.pedals:
            s, e = to_tick(np.array([p.time, p.time + p.duration]))
            new.pedals.append(Pedal(int(s), int(max(e - s, 1))))
        out.tracks.append(new)

    # Tempo at each beat follows the recording: 60 / (seconds to the next beat).
    ibi = np.diff(beats.times)
    qpm = 60.0 / np.concatenate([ibi[:1], ibi])  # the lead-in plays at the first beat's tempo
    ticks = np.concatenate([[0], (np.arange(len(ibi)) + offset) * tpq])
    # Beats skipped before tick 0 (an empty pickup) leave only the last of them, at tick 0.
    keep = np.flatnonzero(ticks > 0)
    first = keep[0] - 1 if len(keep) else len(ticks) - 1
    for i in [first, *keep]:
        out.tempos.append(Tempo(int(max(ticks[i], 0)), float(qpm[i])))

    if chords:
        starts = to_tick(np.array([c[0] for c in chords]))
        last = None
        for tick, (_, _, chord) in zip(starts.tolist(), chords, strict=True):
            if chord != last:
                out.markers.append(TextMeta(int(tick), CHORD_MARKER + chord.label()))
                last = chord

    prev = None
    tick = 0
    for n_beats in _bar_lengths(beats, lead_beats, end_tick / tpq):
        if n_beats != prev:
            out.time_signatures.append(TimeSignature(tick, n_beats, 4))
            prev = n_beats
        tick += n_beats * tpq
    return out


def onset_grid_share(score: Score, per_beat: int = 4, tolerance: float = 1 / 32) -> float:
    """Share of note onsets within `tolerance` beats of a 1/per_beat-beat grid position.

    The default asks for a 16th-note grid with a tolerance of an eighth of a 16th (1/32 beat,
    a 128th note): tight enough that unaligned performance timing scores low.
    """
    onsets = np.concatenate([t.notes.numpy()["time"] for t in score.tracks if len(t.notes)])
    q = onsets.astype(np.float64) / score.tpq * per_beat
    dist = np.abs(q - np.round(q)) / per_beat
    return float(np.mean(dist <= tolerance + 1e-9))
