"""A user's piece: the file exactly as given, and how the model reads it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from symusic import Score, Tempo, TimeSignature

from pianomuse.tokenizer.metre import Metre


@dataclass
class Piece:
    """The one source of truth for where a piece's bars are: its tokens.

    `bar_ticks` are the bar lines of the token stream (its Bar and TimeSig tokens) in the
    file's ticks, so seams, gaps and views all use the bars the model counted."""

    name: str  # for messages: a path, an upload's name, or "input"
    source: Score  # the file as given: every track, name, program and pedal (tick time)
    midi: bytes  # the file's bytes: a continuation keeps them and adds a track
    ids: np.ndarray  # (T,) token ids of the piece read as one piano part
    bar_ticks: np.ndarray  # (bars + 1,) tick of every bar line and of the end of the last bar
    metres: list[Metre]  # the metre of every bar, as the tokens read it

    @property
    def n_bars(self) -> int:
        return len(self.bar_ticks) - 1

    @property
    def tpq(self) -> int:
        return int(self.source.tpq)

    def qpm_at(self, tick: int) -> float:
        """Tempo in force at `tick` (120 before the first tempo event, as MIDI says)."""
        tempos = [t for t in self.source.tempos if t.time <= tick]
        return float(tempos[-1].qpm) if tempos else 120.0


def blank_piece(qpm: float = 120.0, metre: Metre = (4, 4), tpq: int = 480) -> Piece:
    """A piece with no notes yet (music written from chords alone): a tempo and a metre."""
    score = Score(tpq)
    score.tempos = [Tempo(0, qpm)]
    score.time_signatures = [TimeSignature(0, *metre)]
    ids = np.zeros(0, dtype=np.int64)
    return Piece("chords", score, score.dumps_midi(), ids, np.zeros(1, dtype=np.int64), [metre])
