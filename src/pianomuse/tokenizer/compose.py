"""Putting generated music back into a piece: splicing at bar lines, in the piece's own ticks.

The context stays exactly as the user gave it (not re-quantised through tokens); generated
bars are decoded, brought to the piece's tick resolution and placed at a bar line.
"""

from __future__ import annotations

import numpy as np
from symusic import Score, Tempo, TimeSignature

from pianomuse.tokenizer.remi import PianoTokenizer, bar_ticks


def bar_tick(score: Score, bar: int) -> int:
    """Tick where bar number `bar` (0-based) starts, extending the last metre past the end."""
    return int(bar_ticks_upto(score, bar + 1)[bar])


def bar_ticks_upto(score: Score, n: int) -> np.ndarray:
    """Ticks where bars 0..n-1 start, extending the last metre past the end of the score."""
    bars = bar_ticks(score)
    if n <= len(bars):
        return bars[:n]
    sigs = sorted((ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures)
    num, den = (sigs[-1][1], sigs[-1][2]) if sigs else (4, 4)
    length = num * score.tpq * 4 // den
    extra = bars[-1] + np.arange(1, n - len(bars) + 1, dtype=np.int64) * length
    return np.concatenate([bars, extra])


def in_force(score: Score, tick: int) -> tuple[float, tuple[int, int]]:
    """(tempo in qpm, (numerator, denominator)) in force at `tick`."""
    tempos = [t for t in score.tempos if t.time <= tick]
    qpm = float(tempos[-1].qpm) if tempos else 120.0
    sigs = [ts for ts in score.time_signatures if ts.time <= tick]
    ts = (sigs[-1].numerator, sigs[-1].denominator) if sigs else (4, 4)
    return qpm, ts


def decode_bars(
    tok: PianoTokenizer, ids: np.ndarray, tpq: int, qpm: float, ts: tuple[int, int]
) -> Score:
    """Decode generated bars (starting with a Bar) to a Score at `tpq`, with the given tempo
    and time signature from tick 0 (the generated tokens carry none of their own)."""
    score = tok.decode(ids).resample(tpq, min_dur=1)
    score.tempos = [Tempo(0, qpm)]
    score.time_signatures = [TimeSignature(0, ts[0], ts[1])]
    return score


def splice(piece: Score, new: Score, at_tick: int, until_tick: int | None = None) -> Score:
    """`piece` with the notes of `new` (time 0 = `at_tick`) added; with `until_tick`, the
    piece's notes starting in [at_tick, until_tick) are removed first (a replaced passage)."""
    out = piece.copy()
    track = out.tracks[0]
    if until_tick is not None:
        track.notes = track.notes.filter(lambda n: not at_tick <= n.time < until_tick)
    if new.tracks:
        track.notes.extend(new.shift_time(at_tick, inplace=False).tracks[0].notes)
    track.notes.sort()
    return out
