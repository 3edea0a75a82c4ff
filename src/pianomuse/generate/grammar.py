"""The REMI grammar as a mask over the vocabulary, so every sampled sequence is valid.

One stream of piano REMI reads, bar by bar:
    Bar TimeSig (Position (Pitch Velocity Duration)+)*
with positions strictly increasing inside a bar and below the bar's length, pitches strictly
increasing at one position (a key is struck once; it also matches how the data is ordered),
and the piece's time signature kept. Tempo tokens are never generated: a continuation keeps
the tempo of its context. The mask also ends the stream: once `bars` bars are complete, only
the closing token is allowed (the next Bar for a continuation, FIM_End for an infill), which
marks the candidate done and is not part of the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pianomuse.tokenizer import Kind, Structure

# Grammar states: what the last token was (_START: nothing yet, a Bar must open).
_BAR, _TIMESIG, _POSITION, _PITCH, _VELOCITY, _DURATION, _START = range(7)
_STATE_OF_KIND = {
    Kind.BAR: _BAR,
    Kind.TIMESIG: _TIMESIG,
    Kind.POSITION: _POSITION,
    Kind.PITCH: _PITCH,
    Kind.VELOCITY: _VELOCITY,
    Kind.DURATION: _DURATION,
}


@dataclass
class Row:
    """Where one candidate stands in the grammar."""

    state: int = _START  # a continuation starts on a bar line
    position: int = -1  # current position in the bar (-1 before the first Position)
    last_pitch: int = -1  # highest pitch already struck at the current position
    bars: int = 0  # bars started
    done: bool = False


class Grammar:
    """Vectorised validity masks for K candidates continuing one context."""

    def __init__(
        self,
        structure: Structure,
        positions_per_beat: int,
        time_sig: int,
        bars: int | None,
        close_id: int | None = None,
    ):
        self.st = structure
        self.bars = bars
        self.time_sig = time_sig
        num, den = (int(x) for x in structure.vocab[time_sig].split("_")[1].split("/"))
        self.bar_positions = num * positions_per_beat * 4 // den
        k, val = structure.kind, structure.value
        V = len(k)
        self.bar_id = structure.id["Bar_None"]
        self.only_bar = np.zeros(V, dtype=bool)
        self.only_bar[self.bar_id] = True
        self.close_id = self.bar_id if close_id is None else close_id
        self.only_close = np.zeros(V, dtype=bool)
        self.only_close[self.close_id] = True
        self.only_ts = np.zeros(V, dtype=bool)
        self.only_ts[time_sig] = True
        self.is_pos = (k == Kind.POSITION) & (val < self.bar_positions)
        self.is_pitch = k == Kind.PITCH
        self.is_vel = k == Kind.VELOCITY
        self.is_dur = k == Kind.DURATION
        self.value = val

    def start(self, k: int) -> list[Row]:
        return [Row() for _ in range(k)]

    def allowed(self, rows: list[Row], force_close: bool = False) -> torch.Tensor:
        """[K, V] bool: the tokens each candidate may take next. `force_close` allows only
        the way out (a Bar after whole notes) — used when a token budget runs out."""
        out = np.zeros((len(rows), len(self.value)), dtype=bool)
        for i, r in enumerate(rows):
            out[i] = self._row(r, force_close)
        return torch.from_numpy(out)

    def _complete(self, r: Row) -> bool:
        return self.bars is not None and r.bars >= self.bars

    def _row(self, r: Row, force_close: bool) -> np.ndarray:
        if r.done:
            return self.only_close  # finished rows keep emitting it; their tokens are ignored
        if r.state == _START:
            return self.only_bar
        if r.state == _BAR:
            return self.only_ts
        if r.state == _POSITION:
            return self.is_pitch
        if r.state == _PITCH:
            return self.is_vel
        if r.state == _VELOCITY:
            return self.is_dur
        # After TimeSig or Duration: the next bar (or the close once all bars are written),
        # a later position, or (after a Duration) a higher pitch at the same position.
        m = (self.only_close if self._complete(r) else self.only_bar).copy()
        if not force_close:
            m |= self.is_pos & (self.value > r.position)
            if r.state == _DURATION:
                m |= self.is_pitch & (self.value > r.last_pitch)
        return m

    def advance(self, rows: list[Row], tokens: torch.Tensor) -> None:
        """Update every candidate with its sampled token."""
        for r, tok in zip(rows, tokens.tolist(), strict=True):
            if r.done:
                continue
            if tok == self.close_id and self._complete(r):
                r.done = True
                continue
            kind = Kind(int(self.st.kind[tok]))
            if kind == Kind.BAR:
                r.bars += 1
                r.position, r.last_pitch = -1, -1
            elif kind == Kind.POSITION:
                r.position, r.last_pitch = int(self.value[tok]), -1
            elif kind == Kind.PITCH:
                r.last_pitch = int(self.value[tok])
            r.state = _STATE_OF_KIND[kind]
