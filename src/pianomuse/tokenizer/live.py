"""Music played live, as tokens and back: the bars a player (and the copilot) have played,
one bar's tokens at a time, and a stream of generated tokens read note by note as it comes.

Times here are quarter-note beats from the session's first bar line; the live session turns
seconds into beats. Bars are read through the same encoder as files (`Tokenizer.encode`),
so a bar played live reads as the same bar in a file would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature, Track

from pianomuse.tokenizer.base import Tokenizer
from pianomuse.tokenizer.structure import Kind

TPQ = 480  # ticks per quarter note of the scores built here
WINDOW_BARS = 4  # bars read before the one encoded: enough for its chords, no more


@dataclass(frozen=True)
class LiveNote:
    """One note in beats from the session's first bar line."""

    onset: float  # quarter-note beats
    duration: float  # quarter-note beats (> 0)
    pitch: int  # MIDI pitch
    velocity: int  # 1..127
    part: int = -1  # 0 melody, 1 accompaniment, -1 a piano without parts


def live_score(
    tracks: dict[str, Sequence[LiveNote]], qpm: float, metre: tuple[int, int], shift: float = 0.0
) -> Score:
    """A score of named tracks of notes (beats, moved `shift` beats earlier) at one tempo and
    metre."""
    score = Score(TPQ)
    score.tempos.append(Tempo(0, qpm))
    score.time_signatures.append(TimeSignature(0, metre[0], metre[1]))
    for name, notes in tracks.items():
        track = Track(name=name, program=0)
        for n in notes:
            at = int(round((n.onset - shift) * TPQ))
            length = max(int(round(n.duration * TPQ)), 1)
            track.notes.append(Note(at, length, int(n.pitch), int(n.velocity)))
        track.notes.sort()
        score.tracks.append(track)
    return score


def bar_tokens(
    tok: Tokenizer,
    tracks: dict[str, Sequence[LiveNote]],
    bar: int,
    *,
    qpm: float,
    metre: tuple[int, int],
) -> np.ndarray:
    """The tokens of bar `bar` (0-based) of the music in `tracks`, as the encoder reads it
    among the bars before it (the first bar opens with the tempo); a bar without an onset is
    its bar line and metre alone. Only the last few bars are read, so the cost stays flat."""
    st = tok.structure
    bar_beats = 4 * metre[0] / metre[1]
    first = max(bar - WINDOW_BARS, 0)
    lo, hi = first * bar_beats, (bar + 1) * bar_beats
    window = {name: [n for n in notes if lo <= n.onset < hi] for name, notes in tracks.items()}
    window = {name: notes for name, notes in window.items() if notes}
    empty = [st.id["Bar_None"], st.id[f"TimeSig_{metre[0]}/{metre[1]}"]]
    if not any(n.onset >= bar * bar_beats for notes in window.values() for n in notes):
        return np.asarray(empty, dtype=np.int64)
    ids = tok.encode(live_score(window, qpm, metre, shift=lo))
    starts = np.append(st.bar_starts(ids), len(ids))
    k = bar - first
    return ids[starts[k] : starts[k + 1]] if k > 0 else ids[: starts[1]]


class NoteReader:
    """Generated tokens, one at a time, read as notes: `feed` returns the note a token
    completes (its Duration), else None. Onsets count from the first Bar fed."""

    def __init__(self, tok: Tokenizer):
        st = tok.structure
        self.st, self.ppb = st, tok.settings.positions_per_beat
        # Python ints: numpy's compare slowly with `Kind`, and an answer starts with a reader.
        self.kinds = st.kind.tolist()
        self.velocity = np.zeros(len(st.vocab), dtype=np.int64)
        for i in np.flatnonzero(st.kind == Kind.VELOCITY):
            self.velocity[i] = int(st.vocab[i].partition("_")[2])
        self.bar_start, self.bar_len = 0.0, None  # beats
        self.position = self.pitch = self.vel = 0
        self.part = -1

    def feed(self, token: int) -> LiveNote | None:
        kind = self.kinds[token]
        if kind == Kind.BAR:
            if self.bar_len is not None:
                self.bar_start += self.bar_len
            self.bar_len, self.part = 0.0, -1
        elif kind == Kind.TIMESIG:
            self.bar_len = float(self.st.bar_beats[token])
        elif kind == Kind.PART:
            self.part = int(self.st.value[token])
        elif kind == Kind.POSITION:
            self.position = int(self.st.value[token])
        elif kind == Kind.PITCH:
            self.pitch = int(self.st.value[token])
        elif kind == Kind.VELOCITY:
            self.vel = int(self.velocity[token])
        elif kind == Kind.DURATION:
            onset = self.bar_start + self.position / self.ppb
            dur = float(self.st.duration_beats[token])
            return LiveNote(onset, dur, self.pitch, self.vel, self.part)
        return None


def jam_midi(
    player: Sequence[LiveNote], copilot: Sequence[LiveNote], qpm: float, metre: tuple[int, int]
) -> bytes:
    """The whole jam as a MIDI file: the player's and the copilot's notes as two tracks, at
    the session's tempo and metre."""
    score = live_score({"Player": player, "Copilot": copilot}, qpm, metre)
    return bytes(score.dumps_midi())
