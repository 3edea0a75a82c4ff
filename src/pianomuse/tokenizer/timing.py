"""Time as the tokens read it: bars from the metre map, one tempo per bar, nothing after the
last onset. Shared by every tokenizer version."""

from __future__ import annotations

import numpy as np
from symusic import Score, Tempo

from pianomuse.tokenizer.metre import Metre, normalise_metre


def bar_timing(score: Score, metres: list[Metre], name: str) -> Score:
    """`score` ending with the bar of its last onset (tempo and metre events after it change
    no note, and would only add empty bars), with the metre map the tokens carry
    (`normalise_metre`) and one tempo per bar."""
    last = max(int(t.notes.numpy()["time"].max()) for t in score.tracks if len(t.notes))
    score.tempos = score.tempos.filter(lambda t: t.time <= last)
    score.time_signatures = score.time_signatures.filter(lambda t: t.time <= last)
    score.markers = score.markers.filter(lambda m: m.time <= last)
    return tempo_per_bar(normalise_metre(score, metres, name=name))


def bar_ticks(score: Score) -> np.ndarray:
    """Tick of every bar line of a score, from its time signatures (4/4 when it has none)."""
    tpq = score.tpq
    sigs = sorted((ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures)
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    end = max(score.end(), 1)
    bars: list[int] = []
    for j, (t, num, den) in enumerate(sigs):
        stop = sigs[j + 1][0] if j + 1 < len(sigs) else end + 1
        length = max(num * tpq * 4 // den, 1)
        bars.extend(range(t, stop, length))
    return np.asarray(bars, dtype=np.int64)


def tempo_per_bar(score: Score) -> Score:
    """Replace a tempo map by the mean tempo of each bar (time-weighted, so the bar lasts
    as long as before); a single-tempo score is returned unchanged."""
    if len(score.tempos) <= 1:
        return score
    tpq = score.tpq
    t = np.array([tp.time for tp in score.tempos], dtype=np.int64)
    qpm = np.array([tp.qpm for tp in score.tempos], dtype=np.float64)
    bars = bar_ticks(score)
    edges = np.append(bars, bars[-1] + (bars[-1] - bars[-2] if len(bars) > 1 else 4 * tpq))
    # Seconds elapsed at a tick: integrate 60/qpm over quarter notes of the piecewise tempo.
    seg_sec = np.diff(t) / tpq * 60.0 / qpm[:-1]
    cum = np.concatenate([[0.0], np.cumsum(seg_sec)])

    def seconds(x: np.ndarray) -> np.ndarray:
        j = np.clip(np.searchsorted(t, x, side="right") - 1, 0, None)
        return cum[j] + (x - t[j]) / tpq * 60.0 / qpm[j]

    sec = seconds(edges)
    bar_qpm = np.diff(edges) / tpq * 60.0 / np.maximum(np.diff(sec), 1e-9)
    out = score.copy()
    out.tempos = [Tempo(int(b), float(q)) for b, q in zip(bars, bar_qpm, strict=True)]
    return out
