"""How much of a piece survives MIDI -> tokens -> MIDI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianomuse.tokenizer.midi_io import MidiSource, notes_in_beats
from pianomuse.tokenizer.remi import PianoTokenizer


@dataclass
class Survival:
    """Note counts of one round trip."""

    notes: int  # notes of the piano part before tokenizing
    distinct: int  # notes with a distinct (quantised onset, pitch): what one piano can play
    kept: int  # notes found again: same pitch, onset and duration within one grid step
    velocity_ok: int  # kept notes whose velocity is a nearest velocity bin

    def __add__(self, other: Survival) -> Survival:
        return Survival(
            *(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True))
        )


def round_trip(tok: PianoTokenizer, src: MidiSource) -> Survival:
    """Encode and decode `src` and match every original note in the result.

    Onset and duration may move by one quantisation step (a 32nd for durations up to 4
    beats, twice that beyond); doubled notes (same key struck twice at one quantised onset,
    e.g. melody and accompaniment in unison) are merged by the tokenizer and count as lost.
    """
    piano = tok.piano_score(src)
    orig = notes_in_beats(piano)
    dec = notes_in_beats(tok.decode(tok.encode(piano)))
    step = 1.0 / tok.settings.positions_per_beat
    vel_bins = np.asarray(tok.velocity_bins)
    onsets_q = np.round(orig["onset"] / step).astype(np.int64)
    distinct = len(set(zip(onsets_q.tolist(), orig["pitch"].tolist(), strict=True)))
    by_pitch: dict[int, list[int]] = {}
    for j, p in enumerate(dec["pitch"].tolist()):
        by_pitch.setdefault(p, []).append(j)
    used = np.zeros(len(dec["pitch"]), dtype=bool)
    kept = vel_ok = 0
    for i, p in enumerate(orig["pitch"].tolist()):
        d = orig["duration"][i]
        d_step = step if d <= 4 else 2 * step
        for j in by_pitch.get(p, []):
            if used[j] or abs(dec["onset"][j] - orig["onset"][i]) > step:
                continue
            if abs(dec["duration"][j] - d) <= d_step:
                used[j] = True
                kept += 1
                # The right bin is a nearest one (a velocity halfway between bins has two).
                dist = np.abs(vel_bins - orig["velocity"][i])
                vel_ok += int(abs(dec["velocity"][j] - orig["velocity"][i]) == dist.min())
                break
    return Survival(len(orig["pitch"]), distinct, kept, vel_ok)
