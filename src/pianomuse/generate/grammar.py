"""The REMI grammar as a mask over the vocabulary, so every sampled sequence is valid.

What may follow what is the token format's own table (`FOLLOWS`, in the tokenizer's
structure), for every version:
    Bar TimeSig [Part] (Position [Chord [Bass]] (Pitch Velocity Duration)*)* [Part ...]
with positions strictly increasing inside a bar's block and below the bar's length, pitches
strictly increasing at one position (a key is struck once; it also matches how the data is
ordered), each bar's metre given by the caller (a continuation's chosen metre, or the metres
of the bars an infill replaces), and parts as the piece has them: with parts, every bar's
notes come in blocks opened by their Part, one per part; without, no Part at all. Tempo
tokens are never generated: new music keeps the tempo of its context. The mask also ends the
stream: once `bars` bars are complete, only the closing token is allowed (the next Bar for a
continuation, FIM_End for an infill), which marks the candidate done and is not part of the
result.

Extension points: a new token kind is an entry of `FOLLOWS`; a rule on top of the grammar
is a `Constraint` (`pianomuse.generate.constraints`) that narrows the mask, given where a
candidate stands (`Row`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pianomuse.tokenizer import Kind, Structure
from pianomuse.tokenizer.structure import FOLLOWS


@dataclass
class Row:
    """Where one candidate stands in the grammar (positions are grid steps)."""

    last: Kind | None = None  # kind of the last token; None before the first (a Bar opens)
    bar: int = -1  # index of the current new bar (-1 before the first)
    bar_start: int = 0  # first position of the current bar, counted from the first new bar
    bar_len: int = 0  # length of the current bar
    position: int = -1  # position within the bar's block (-1 before the first Position)
    pitch: int = -1  # MIDI pitch of the current note; after its Duration, the highest struck
    part: int = -1  # the block's part (-1 before any Part in this bar)
    parts_used: int = 0  # bit p set: this bar already has part p's block
    done: bool = False
    state: dict = field(default_factory=dict)  # constraints keep their own state here
    index: int = 0  # the candidate's place in the batch (rules of its own: `PerRow`)

    @property
    def first_block(self) -> bool:
        """In the bar's first block, where its chords go (a bar without parts is one block)."""
        return self.bar >= 0 and bin(self.parts_used).count("1") <= 1

    @property
    def now(self) -> int:
        """Position of the current onset, counted from the first new bar."""
        return self.bar_start + max(self.position, 0)


class Constraint:
    """A rule on top of the grammar: `narrow` clears tokens of `mask` [V] that the candidate
    standing at `row` may not take; `advance` sees every token it takes."""

    def narrow(self, grammar: Grammar, row: Row, mask: np.ndarray) -> None:
        raise NotImplementedError

    def advance(self, grammar: Grammar, row: Row, token: int) -> None:
        return None


class Grammar:
    """Vectorised validity masks for K candidates writing `bars` bars (None: until the
    token budget runs out); bar k has the metre `metres[k]` (a TimeSig token id; the last
    one repeats)."""

    def __init__(
        self,
        structure: Structure,
        positions_per_beat: int,
        metres: Sequence[int],
        bars: int | None,
        close_id: int | None = None,
        constraints: Sequence[Constraint] = (),
        parts: bool = False,
    ):
        if not metres:
            raise ValueError("a grammar needs the metre of at least one bar")
        self.st = structure
        self.ppb = positions_per_beat
        self.metres = list(metres)
        self.bars = bars
        self.parts = parts  # bars hold part blocks (the piece has a melody and the rest)
        self.constraints = list(constraints)
        kind, self.value = structure.kind, structure.value
        V = len(kind)
        self.bar_id = structure.id["Bar_None"]
        self.close_id = self.bar_id if close_id is None else close_id
        self.of_kind = {k: kind == k for k in Kind}  # [V] bool per kind
        # One-token masks, rows of one identity made once (read-only views: callers OR them
        # into their own masks); the kind of every token as a `Kind` (comparing numpy's
        # integers with an enum costs microseconds a time, at every step of every row).
        self._one = np.eye(V, dtype=bool)
        self._one.flags.writeable = False
        self._kind_of = [Kind(int(k)) for k in kind]
        # Grid steps of each Duration token (0 elsewhere): durations sit on the grid.
        self.duration_steps = np.round(structure.duration_beats * positions_per_beat).astype(int)
        self.longest_duration = int(self.duration_steps.max())

    def kind_of(self, token: int) -> Kind:
        """The kind of token id `token`."""
        return self._kind_of[token]

    def only(self, i: int) -> np.ndarray:
        """[V] bool: token `i` alone (read-only)."""
        return self._one[i]

    def metre(self, bar: int) -> int:
        """TimeSig token id of new bar `bar`."""
        return self.metres[min(bar, len(self.metres) - 1)]

    def bar_steps(self, bar: int) -> int:
        """Length of new bar `bar` in grid steps."""
        return int(round(self.st.bar_beats[self.metre(bar)] * self.ppb))

    def start(self, k: int) -> list[Row]:
        return [Row(index=i) for i in range(k)]

    def complete(self, r: Row) -> bool:
        """All the bars asked for are written (the next bar line closes the stream)."""
        return self.bars is not None and r.bar + 1 >= self.bars

    def allowed(self, rows: list[Row], force_close: bool = False) -> np.ndarray:
        """[K, V] bool: the tokens each candidate may take next. `force_close` allows only
        the way out (bar lines after whole notes): used when a token budget runs out."""
        return np.stack([self._row(r, force_close) for r in rows])

    def _row(self, r: Row, force_close: bool, strict: bool = False) -> np.ndarray:
        """The tokens candidate `r` may take next. Where the constraints together leave none
        (rules that cannot all hold at this point), each is applied in turn and one that
        would leave nothing is skipped for this token, the earlier in `constraints` first;
        `strict` returns the empty mask instead."""
        if r.done:
            return self.only(self.close_id)  # finished rows keep emitting it; ignored
        mask = np.zeros(len(self.value), dtype=bool)
        closing = r.last in (Kind.TIMESIG, Kind.DURATION, Kind.CHORD, Kind.BASS)
        for kind in FOLLOWS[r.last]:
            if force_close and closing and kind != Kind.BAR:
                continue  # no new note once the budget is spent: close the open bars
            if kind == Kind.BAR:
                mask |= self.only(self.close_id if self.complete(r) else self.bar_id)
            elif kind == Kind.TIMESIG:
                mask |= self.only(self.metre(r.bar))
            elif kind == Kind.PART:
                if self.parts:  # a part's block, once per bar
                    mask |= self.of_kind[kind] & (
                        (r.parts_used >> np.maximum(self.value, 0)) & 1 == 0
                    )
            elif kind == Kind.POSITION:
                if self.parts and r.part < 0:
                    continue  # with parts, a bar's notes start with their block's Part
                mask |= self.of_kind[kind] & (self.value > r.position) & (self.value < r.bar_len)
            elif kind == Kind.PITCH and r.last == Kind.DURATION:
                mask |= self.of_kind[kind] & (self.value > r.pitch)  # higher, same position
            elif kind != Kind.TEMPO:  # new music keeps its context's tempo
                mask |= self.of_kind[kind]
        grammar_mask = mask.copy()
        for c in self.constraints:
            c.narrow(self, r, mask)
        if self.parts and self.constraints:
            # A block no note could follow under every rule (every position taken by what
            # they forbid, e.g. a key held through the bar under a polyphony of 1) is a dead
            # end: never open it.
            for tok in np.flatnonzero(mask & self.of_kind[Kind.PART]):
                if not self._opens(r, int(tok), force_close):
                    mask[tok] = False
        if not mask.any() and not strict:
            mask = grammar_mask
            for c in self.constraints:
                trial = mask.copy()
                c.narrow(self, r, trial)
                if trial.any():
                    mask = trial
        if not mask.any() and not strict:  # the grammar alone left nothing: a bug
            names = ", ".join(type(c).__name__ for c in self.constraints)
            raise RuntimeError(f"the grammar left no token after {r.last} ({names})")
        return mask

    def _opens(self, r: Row, part_token: int, force_close: bool) -> bool:
        """Whether a token may follow `part_token` for the candidate at `r`, every rule kept."""
        probe = copy.deepcopy(r)  # with the constraints' state, which advancing changes
        self.advance([probe], np.array([part_token]))
        return bool(self._row(probe, force_close, strict=True).any())

    def advance(self, rows: list[Row], tokens: np.ndarray) -> None:
        """Update every candidate with its sampled token ([K] ids)."""
        for r, tok in zip(rows, np.asarray(tokens).tolist(), strict=True):
            if r.done:
                continue
            if tok == self.close_id and self.complete(r):
                r.done = True
                continue
            kind = self.kind_of(tok)
            if kind == Kind.BAR:
                r.bar_start += r.bar_len if r.bar >= 0 else 0
                r.bar += 1
                r.bar_len = self.bar_steps(r.bar)
                r.position, r.pitch, r.part, r.parts_used = -1, -1, -1, 0
            elif kind == Kind.PART:
                r.part, r.position, r.pitch = int(self.value[tok]), -1, -1
                r.parts_used |= 1 << r.part
            elif kind == Kind.POSITION:
                r.position, r.pitch = int(self.value[tok]), -1
            elif kind == Kind.PITCH:
                r.pitch = int(self.value[tok])
            r.last = kind
            for c in self.constraints:
                c.advance(self, r, tok)
