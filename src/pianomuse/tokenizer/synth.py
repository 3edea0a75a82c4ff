"""MIDI to sound samples: symusic's synthesizer (a SoundFont sample player) on a piano copy of
a score, with the sustain pedal applied to the notes first.

The synthesizer ignores controller events, so a pedalled file would sound dry: `sustained`
does what the pedal does (a key released while the pedal is down keeps sounding until the
pedal is lifted, or until the same key is struck again)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from symusic import Note, Score

from pianomuse.errors import UserError
from pianomuse.tokenizer.midi_io import MidiSource, load_score, notes_in_beats, seconds_at


def sustained(score: Score) -> Score:
    """A copy of `score` whose notes are held to the end of the pedal they were released
    under; the pedals themselves are dropped."""
    out = score.copy()
    for track in out.tracks:
        if not len(track.pedals) or not len(track.notes):
            track.pedals.clear()
            continue
        n = track.notes.numpy()
        p = track.pedals.numpy()
        at = np.argsort(p["time"], kind="stable")
        p = {k: v[at] for k, v in p.items()}
        down, up = p["time"], p["time"] + p["duration"]  # (P,) ticks, in time order
        end = n["time"] + n["duration"]
        # The pedal interval each note ends in (if any): the last one starting before its end.
        k = np.searchsorted(down, end, side="left") - 1
        held = (k >= 0) & (end < up[np.maximum(k, 0)])
        new_end = np.where(held, up[np.maximum(k, 0)], end)
        # ...but not past the next onset of the same key, which restrikes the string.
        order = np.lexsort((n["time"], n["pitch"]))
        nxt = np.full(len(end), np.iinfo(np.int64).max)
        same = n["pitch"][order][1:] == n["pitch"][order][:-1]
        nxt[order[:-1][same]] = n["time"][order][1:][same]
        new_end = np.maximum(np.minimum(new_end, nxt), end)
        track.notes = Note.from_numpy(n["time"], new_end - n["time"], n["pitch"], n["velocity"])
        track.pedals.clear()
    return out


@functools.lru_cache(maxsize=2)
def _synthesizer(soundfont: Path, sample_rate: int):
    from symusic import Synthesizer

    return Synthesizer(sf_path=str(soundfont), sample_rate=sample_rate)


def _last_end_seconds(score: Score) -> float:
    """When the last note of a score ends, seconds (0 without notes)."""
    n = notes_in_beats(score)
    ends = n["onset"] + n["duration"]
    return float(seconds_at(score, ends.max(keepdims=True))[0]) if len(ends) else 0.0


def sounding_seconds(score: Score) -> float:
    """When the last note of a score stops sounding (its key or the pedal released), seconds."""
    return _last_end_seconds(sustained(score))


def synthesize(
    src: MidiSource, soundfont: Path, sample_rate: int, max_seconds: float
) -> np.ndarray:
    """The piece as stereo samples, (2, S) float32, every track played on the soundfont's
    first preset (a piano copilot's files are piano; a drum track is left out). A piece that
    sounds longer than `max_seconds` is a UserError, before any memory is taken for it."""
    score = sustained(load_score(src))
    score.tracks = [t for t in score.tracks if not t.is_drum]
    for track in score.tracks:
        track.program = 0
    if (length := _last_end_seconds(score)) > max_seconds:  # `score` is sustained already
        raise UserError(
            f"the piece sounds for {length / 60:.0f} minutes: audio is written for pieces of up "
            f"to {max_seconds / 60:.0f}"
        )
    if not score.note_num():
        return np.zeros((2, 0), np.float32)  # the synthesizer refuses a score without notes
    return np.asarray(_synthesizer(soundfont, sample_rate).render(score, stereo=True))
