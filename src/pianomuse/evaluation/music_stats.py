"""Musical statistics of note lists, and distances between them.

Notes are the arrays of `pianomuse.tokenizer.notes_in_beats` (onset and duration in beats,
pitch, velocity), so this module needs no MIDI library.
"""

from __future__ import annotations

import numpy as np

Notes = dict[str, np.ndarray]


def pitch_class_hist(n: Notes) -> np.ndarray:
    """Share of notes on each of the 12 pitch classes (C = 0)."""
    h = np.bincount(n["pitch"] % 12, minlength=12).astype(float)
    return h / max(h.sum(), 1.0)


def groove_hist(n: Notes, beats_per_bar: float = 4.0) -> np.ndarray:
    """Share of onsets on each 16th-note position of the bar (the rhythm's fingerprint)."""
    bins = int(round(beats_per_bar * 4))
    pos = np.round((n["onset"] % beats_per_bar) * 4).astype(int) % bins
    h = np.bincount(pos, minlength=bins).astype(float)
    return h / max(h.sum(), 1.0)


def polyphony(n: Notes) -> float:
    """Mean number of notes sounding at each distinct onset."""
    if len(n["onset"]) == 0:
        return 0.0
    starts = np.unique(n["onset"])
    ends = n["onset"] + n["duration"]
    sounding = [(np.sum((n["onset"] <= t + 1e-9) & (ends > t + 1e-9))) for t in starts]
    return float(np.mean(sounding))


def stats(n: Notes, bars: float, beats_per_bar: float = 4.0) -> dict[str, object]:
    """Everything compared between a continuation, the truth and the context."""
    has = len(n["pitch"]) > 0
    return {
        "pitch_classes": pitch_class_hist(n),
        "groove": groove_hist(n, beats_per_bar),
        "density": len(n["pitch"]) / max(bars, 1e-9),
        "polyphony": polyphony(n),
        "pitch_range": float(n["pitch"].max() - n["pitch"].min()) if has else 0.0,
        "velocity_mean": float(n["velocity"].mean()) if has else 0.0,
        "velocity_std": float(n["velocity"].std()) if has else 0.0,
    }


def distance(a: dict[str, object], b: dict[str, object]) -> dict[str, float]:
    """Histograms: total-variation distance (0 = same, 1 = disjoint); scalars: |a - b|."""
    out = {}
    for k, va in a.items():
        vb = b[k]
        if isinstance(va, np.ndarray):
            out[k] = 0.5 * float(np.abs(va - vb).sum())
        else:
            out[k] = abs(float(va) - float(vb))
    return out
