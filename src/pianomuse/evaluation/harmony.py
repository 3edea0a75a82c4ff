"""What a musician hears of a continuation: does it follow the chords, does its bass play
their roots, does it reuse the song's material, does it keep the metre.

Notes are arrays of onset and duration (beats) and pitch; chords are (beat, `Chord`) changes.
"""

from __future__ import annotations

import numpy as np

from pianomuse.harmony import Chord

Notes = dict[str, np.ndarray]
Changes = list[tuple[float, Chord]]


def chord_spans(changes: Changes, start: float, end: float) -> list[tuple[float, float, Chord]]:
    """The chords sounding over [start, end) as (from, to, chord), no-chord spans left out."""
    spans = []
    for i, (t, chord) in enumerate(changes):
        a = max(t, start)
        b = min(changes[i + 1][0] if i + 1 < len(changes) else end, end)
        if a < b and chord.root is not None:
            spans.append((a, b, chord))
    return spans


def chord_fit(notes: Notes, spans: list[tuple[float, float, Chord]]) -> float | None:
    """Share of the notes' duration (inside chord spans) whose pitch class is a tone of the
    chord sounding then; None when no note sounds under a chord."""
    inside = total = 0.0
    on, off, pc = notes["onset"], notes["onset"] + notes["duration"], notes["pitch"] % 12
    for a, b, chord in spans:
        overlap = np.clip(np.minimum(off, b) - np.maximum(on, a), 0, None)
        total += overlap.sum()
        inside += overlap[np.isin(pc, list(chord.tones))].sum()
    return inside / total if total > 0 else None


def bass_fit(notes: Notes, spans: list[tuple[float, float, Chord]]) -> float | None:
    """Share of chord spans whose lowest sounding note is the chord's root or its bass (a
    span without a note counts as missed); None without spans."""
    if not spans:
        return None
    hits = 0
    on, off = notes["onset"], notes["onset"] + notes["duration"]
    for a, b, chord in spans:
        sounding = (on < b) & (off > a)
        if sounding.any():
            low = int(notes["pitch"][sounding].min()) % 12
            hits += low in {chord.root, chord.lowest}
    return hits / len(spans)


def bar_sets(notes: Notes, lines: np.ndarray) -> list[set[tuple[int, int]]]:
    """Each bar's notes as a set of (pitch, onset in the bar in 16ths)."""
    out = []
    for a, b in zip(lines[:-1], lines[1:], strict=True):
        sel = (notes["onset"] >= a) & (notes["onset"] < b)
        q = np.round((notes["onset"][sel] - a) * 4).astype(int)
        out.append(set(zip(notes["pitch"][sel].tolist(), q.tolist(), strict=True)))
    return out


def material_reuse(new_bars: list[set], context_bars: list[set]) -> float | None:
    """Mean over the new bars of their best Jaccard overlap with a bar of the context: 1.0
    when each new bar repeats one of the song's bars, 0.0 when none shares a note."""
    scores = []
    for bar in new_bars:
        if not bar:
            continue
        scores.append(max((len(bar & c) / len(bar | c) for c in context_bars if c), default=0.0))
    return float(np.mean(scores)) if scores else None


def bars_looped(new_bars: list[set]) -> float | None:
    """Share of the new bars (after the first) that repeat, note for note, one of the two
    bars before them: a loop, where music varies what comes back."""
    looped = [bool(bar) and bar in new_bars[max(k - 2, 0) : k] for k, bar in enumerate(new_bars)]
    return float(np.mean(looped[1:])) if len(new_bars) > 1 else None


def metre_kept(new_lengths: list[float], context_lengths: list[float]) -> float:
    """Share of new bars as long as the bar length most of the context's bars have."""
    values, counts = np.unique(np.round(context_lengths, 6), return_counts=True)
    prevailing = values[np.argmax(counts)]
    return float(np.mean(np.isclose(new_lengths, prevailing))) if new_lengths else 0.0
