"""How much of a piece survives MIDI -> tokens -> MIDI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianomuse.tokenizer.base import Tokenizer
from pianomuse.tokenizer.midi_io import MidiSource

# "Exactly kept": the decoded onset within a 48th of a beat of the played one, closer than
# any grid step: a triplet on a 32nd-note grid misses by 1/24 beat.
EXACT = 1 / 48


@dataclass
class Survival:
    """Note counts of one round trip."""

    notes: int  # notes of the piece as the tokenizer reads it (every note of every part)
    distinct: int  # notes with a distinct (quantised onset, pitch, part)
    kept: int  # notes found again: same part and pitch, onset and duration within a step
    velocity_ok: int  # kept notes whose velocity is a nearest velocity bin
    exact: int  # kept notes whose onset is within `EXACT` of the original

    def __add__(self, other: Survival) -> Survival:
        return Survival(
            *(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True))
        )


def _parts(score) -> dict[str, dict[str, np.ndarray]]:
    """Notes (beats) of every part, keyed by track name (tracks of one name are one part)."""
    tpq = float(score.tpq)
    cols: dict[str, list] = {}
    for t in score.tracks:
        cols.setdefault(t.name, []).append(t.notes.numpy())
    out = {}
    for name, arrays in cols.items():
        n = {k: np.concatenate([a[k] for a in arrays]) for k in arrays[0]}
        out[name] = {
            "onset": n["time"] / tpq,
            "duration": n["duration"] / tpq,
            "pitch": n["pitch"].astype(np.int64),
            "velocity": n["velocity"].astype(np.int64),
        }
    return out


def round_trip(tok: Tokenizer, src: MidiSource) -> Survival:
    """Encode and decode `src` and match every original note in the result, part by part.

    Onset and duration may move by one grid step (1 / positions per beat; a duration beyond
    4 beats by its coarser step); a key struck twice at one quantised onset in one part is
    kept once and the other counts as lost."""
    piano = tok.piano_score(src)
    orig, dec = _parts(piano), _parts(tok.decode(tok.encode(piano)))
    if len(orig) == 1 and len(dec) == 1:  # one part each: whatever the track's name
        dec = {next(iter(orig)): next(iter(dec.values()))}
    step = 1.0 / tok.settings.positions_per_beat
    long_step = 1.0 / getattr(tok.settings, "long_per_beat", tok.settings.positions_per_beat // 2)
    vel_bins = np.asarray(tok.velocity_bins)
    total = Survival(0, 0, 0, 0, 0)
    for name, o in orig.items():
        d = dec.get(name, {k: v[:0] for k, v in o.items()})
        onsets_q = np.round(o["onset"] / step).astype(np.int64)
        distinct = len(set(zip(onsets_q.tolist(), o["pitch"].tolist(), strict=True)))
        by_pitch: dict[int, list[int]] = {}
        for j, p in enumerate(d["pitch"].tolist()):
            by_pitch.setdefault(p, []).append(j)
        used = np.zeros(len(d["pitch"]), dtype=bool)
        kept = vel_ok = exact = 0
        for i, p in enumerate(o["pitch"].tolist()):
            dur = o["duration"][i]
            d_step = step if dur <= 4 else long_step
            for j in by_pitch.get(p, []):
                miss = abs(d["onset"][j] - o["onset"][i])
                if used[j] or miss > step + 1e-9:
                    continue
                if abs(d["duration"][j] - dur) <= d_step + 1e-9:
                    used[j] = True
                    kept += 1
                    exact += int(miss <= EXACT)
                    # The right bin is a nearest one (a velocity halfway between bins has two).
                    dist = np.abs(vel_bins - o["velocity"][i])
                    vel_ok += int(abs(d["velocity"][j] - o["velocity"][i]) == dist.min())
                    break
        total = total + Survival(len(o["pitch"]), distinct, kept, vel_ok, exact)
    return total


def triplet_share(notes: dict[str, np.ndarray], tolerance: float = EXACT) -> float:
    """Share of onsets on a triplet position of the beat (thirds or sixths) and off the
    16th-note grid: how much of a piece a 32nd-note grid cannot hold."""
    frac = np.mod(notes["onset"], 1.0)
    near = lambda points: np.min(np.abs(frac[:, None] - np.asarray(points)[None, :]), axis=1)  # noqa: E731
    triplet = near([1 / 6, 1 / 3, 2 / 3, 5 / 6]) <= tolerance
    sixteenth = near([0, 0.25, 0.5, 0.75, 1.0]) <= tolerance
    return float(np.mean(triplet & ~sixteenth)) if len(frac) else 0.0
