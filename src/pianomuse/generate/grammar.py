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

Extension points: a new token kind is an entry of `FOLLOWS`; rules on top of the grammar
(keys the kept music holds, later scales, registers, chords) are `Constraint`s that narrow
the mask, given where a candidate stands (`Row`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

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
        self.only = lambda i: np.arange(V) == i  # noqa: E731 - a one-token mask
        # Grid steps of each Duration token (0 elsewhere): durations sit on the grid.
        self.duration_steps = np.round(structure.duration_beats * positions_per_beat).astype(int)
        self.longest_duration = int(self.duration_steps.max())

    def metre(self, bar: int) -> int:
        """TimeSig token id of new bar `bar`."""
        return self.metres[min(bar, len(self.metres) - 1)]

    def bar_steps(self, bar: int) -> int:
        """Length of new bar `bar` in grid steps."""
        return int(round(self.st.bar_beats[self.metre(bar)] * self.ppb))

    def start(self, k: int) -> list[Row]:
        return [Row() for _ in range(k)]

    def complete(self, r: Row) -> bool:
        """All the bars asked for are written (the next bar line closes the stream)."""
        return self.bars is not None and r.bar + 1 >= self.bars

    def allowed(self, rows: list[Row], force_close: bool = False) -> torch.Tensor:
        """[K, V] bool: the tokens each candidate may take next. `force_close` allows only
        the way out (bar lines after whole notes): used when a token budget runs out."""
        return torch.from_numpy(np.stack([self._row(r, force_close) for r in rows]))

    def _row(self, r: Row, force_close: bool) -> np.ndarray:
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
        for c in self.constraints:
            c.narrow(self, r, mask)
        if not mask.any():  # constraints that contradict: a bug, never a silent NaN later
            names = ", ".join(type(c).__name__ for c in self.constraints)
            raise RuntimeError(f"the grammar left no token after {r.last} ({names})")
        return mask

    def advance(self, rows: list[Row], tokens: torch.Tensor) -> None:
        """Update every candidate with its sampled token."""
        for r, tok in zip(rows, tokens.tolist(), strict=True):
            if r.done:
                continue
            if tok == self.close_id and self.complete(r):
                r.done = True
                continue
            kind = Kind(int(self.st.kind[tok]))
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


class KeysFree(Constraint):
    """New notes never overlap a same-key note of the kept music: a key held by a kept note
    may not be struck before `free[p]`, and a note may not sound into `stop[p]`, the next
    kept onset of its key (both (128,) grid positions counted from the first new bar). A
    position is offered only if some key can be struck there."""

    def __init__(self, free: np.ndarray, stop: np.ndarray):
        self.free, self.stop = np.asarray(free), np.asarray(stop)
        # The last release of a held key and the first kept onset, for `narrow`'s shortcut.
        self.free_until, self.first_stop = int(self.free.max()), int(self.stop.min())

    def _playable(self, g: Grammar, at: np.ndarray, row: Row) -> np.ndarray:
        """Whether any key of the vocabulary can be struck at each position of `at`, or a
        given chord is to be written there (`ChordPlan`)."""
        keys = g.st.pitch_id >= 0
        free, stop = self.free[keys, None], self.stop[keys, None]
        chord_at = row.state.get("chord_at")
        return ((free <= at) & (stop > at)).any(axis=0) | (
            at == row.bar_start + (chord_at if chord_at is not None else -1)
        )

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        # Past the last held key and before the first kept onset, by more than the rest of
        # the bar and the longest note, no key is taken: most of a continuation's bars, where
        # skipping the three vocabulary-wide tests below took the masks of a `complete` from
        # 0.170 to 0.136 s (measured, in turns).
        if row.now >= self.free_until and self.first_stop >= (
            row.bar_start + row.bar_len + g.longest_duration
        ):
            return
        self.narrow_all(g, row, mask)

    def narrow_all(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        """`narrow` without its shortcut (its twin in the tests)."""
        pitch = g.of_kind[Kind.PITCH] & mask
        if pitch.any():
            p = g.value[pitch]
            pitch[pitch] = (self.free[p] > row.now) | (self.stop[p] <= row.now)
            mask &= ~pitch
        position = g.of_kind[Kind.POSITION] & mask
        if position.any():
            at = row.bar_start + g.value[position]
            position[position] = ~self._playable(g, at, row)
            mask &= ~position
        if row.last == Kind.VELOCITY:
            mask &= ~g.of_kind[Kind.DURATION] | (row.now + g.duration_steps <= self.stop[row.pitch])


class ChordPlan(Constraint):
    """Given chords, exactly: `plan[k]` lists (position, [Chord id, Bass id?]) of new bar k.
    Each is written at its position in the bar's first block (that Position cannot be
    skipped, and the block cannot close before it), and no other chord is."""

    def __init__(self, plan: Sequence[Sequence[tuple[int, Sequence[int]]]]):
        self.plan = [sorted((int(p), list(ids)) for p, ids in bar) for bar in plan]

    def _pending(self, row: Row) -> list[tuple[int, list[int]]]:
        bar = self.plan[row.bar] if 0 <= row.bar < len(self.plan) else []
        return bar[row.state.get("chord_i", 0) :]

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        queue = row.state.get("chord_queue", [])
        if queue:  # inside a given chord (its Bass): that token
            mask &= g.only(queue[0])
            return
        mask &= ~(g.of_kind[Kind.CHORD] | g.of_kind[Kind.BASS])
        pending = self._pending(row) if row.first_block else []
        opened = not g.parts or row.parts_used != 0  # the first block has begun
        if not pending or not opened:
            return
        at, ids = pending[0]
        if row.last in (Kind.POSITION, Kind.TEMPO) and row.position == at:
            mask[:] = g.only(ids[0])
            return
        # Do not pass the chord's position, nor close the block before it.
        mask &= ~(g.of_kind[Kind.POSITION] & (g.value > at))
        mask &= ~g.of_kind[Kind.PART] & ~g.only(g.bar_id) & ~g.only(g.close_id)

    def advance(self, g: Grammar, row: Row, token: int) -> None:
        kind = g.st.kind[token]
        if kind == Kind.BAR:
            row.state["chord_i"], row.state["chord_queue"] = 0, []
        elif kind in (Kind.CHORD, Kind.BASS):
            queue = row.state.get("chord_queue") or [
                t for _, ids in self._pending(row)[:1] for t in ids
            ]
            if queue:  # else a chord not of the plan (a given block's, see `GivenBlock`)
                row.state["chord_queue"] = queue[1:]
                if not queue[1:]:
                    row.state["chord_i"] = row.state.get("chord_i", 0) + 1
        pending = self._pending(row)
        # Where the next given chord goes: other rules must leave that position open.
        row.state["chord_at"] = pending[0][0] if pending else None


class GivenBlock(Constraint):
    """Given blocks, exactly: `blocks[k]` is the token sequence (from its Part token) of one
    part of new bar k, or empty; the bar's other block is the model's. With `opens` the
    given block opens the bar (an accompaniment written to a given melody, a melody over a
    given accompaniment). Without, the model may write its block first; once the given Part
    is taken its block follows token for token, and the bar cannot end without it (a live
    accompaniment already sounding in a bar whose melody is still to be guessed). It decides
    alone where it forces a token: put it last among the constraints."""

    def __init__(self, blocks: Sequence[Sequence[int]], *, opens: bool = True):
        self.blocks = [list(b) for b in blocks]
        self.opens = opens

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        block = self.blocks[row.bar] if 0 <= row.bar < len(self.blocks) else []
        i = row.state.get("given_i", 0)
        if not block:
            return
        if 0 < i < len(block) or (i == 0 and self.opens and row.last == Kind.TIMESIG):
            mask[:] = g.only(block[i])
        elif i == 0 and not self.opens:  # still to come: the bar stays open
            mask &= ~(g.only(g.bar_id) | g.only(g.close_id))
        elif i == len(block) and row.part == g.value[block[0]]:
            # The given block is whole: the other part's block, or the bar's end.
            mask &= g.of_kind[Kind.PART] | g.only(g.bar_id) | g.only(g.close_id)

    def advance(self, g: Grammar, row: Row, token: int) -> None:
        if g.st.kind[token] == Kind.BAR:
            row.state["given_i"] = 0
            return
        block = self.blocks[row.bar] if 0 <= row.bar < len(self.blocks) else []
        i = row.state.get("given_i", 0)
        if i < len(block) and token == block[i]:
            row.state["given_i"] = i + 1


class OnePart(Constraint):
    """Only `part`'s block in every bar (a melody alone, or an accompaniment alone)."""

    def __init__(self, part: int):
        self.part = part

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        mask &= ~g.of_kind[Kind.PART] | (g.value == self.part)


class Scale(Constraint):
    """Notes of a scale only (`pitch_classes`, 0 = C). With `passing`, a note outside it may
    pass by, lasting at most `passing` grid steps."""

    def __init__(self, pitch_classes: Sequence[int], passing: int = 0):
        self.inside = np.zeros(12, dtype=bool)
        self.inside[list(pitch_classes)] = True
        self.passing = passing

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        pitch = g.of_kind[Kind.PITCH]
        outside = pitch & ~self.inside[np.maximum(g.value, 0) % 12]
        if not self.passing:
            mask &= ~outside
        elif row.last == Kind.VELOCITY and not self.inside[row.pitch % 12]:
            mask &= ~g.of_kind[Kind.DURATION] | (g.duration_steps <= self.passing)


class Register(Constraint):
    """Notes of each part inside its range: `ranges` maps a part (0 melody, 1 accompaniment;
    -1 every part without a range of its own, or a piece without parts) to (lowest,
    highest) MIDI pitch."""

    def __init__(self, ranges: dict[int, tuple[int, int]]):
        self.ranges = dict(ranges)

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        bounds = self.ranges.get(row.part, self.ranges.get(-1))  # -1: every part
        if bounds is not None:
            pitch = g.of_kind[Kind.PITCH]
            mask &= ~pitch | ((g.value >= bounds[0]) & (g.value <= bounds[1]))


class Density(Constraint):
    """Between `low` and `high` notes in every new bar: no note beyond `high`, and the bar
    cannot end before `low` (while a position is left to put them at). With `part`, only
    that part's notes count (the part written beside a given one)."""

    def __init__(self, low: int, high: int, part: int = -1):
        self.low, self.high, self.part = low, high, part

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        n = row.state.get("notes", 0)
        if n >= self.high and (self.part < 0 or row.part == self.part):
            # A new block would need a note too (a Part is followed by a Position).
            mask &= ~(g.of_kind[Kind.PITCH] | g.of_kind[Kind.POSITION] | g.of_kind[Kind.PART])
            if not mask.any() and row.last == Kind.POSITION:
                mask |= g.of_kind[Kind.CHORD]  # an open position may still take a chord
        elif n < self.low:
            # Not before the part's block has had its notes (or, unopened, is still to come).
            closing = g.only(g.bar_id) | g.only(g.close_id)
            if (mask & ~closing).any():  # only while the bar can still take a note
                mask &= ~closing
            if row.position == row.bar_len - 1 and self.part in (-1, row.part):
                # At the bar's last position pitches rise: leave room above for the rest.
                pitches = np.flatnonzero(mask & g.of_kind[Kind.PITCH])
                need = self.low - n - 1
                if len(pitches) > need > 0:
                    mask[pitches[len(pitches) - need :]] = False

    def advance(self, g: Grammar, row: Row, token: int) -> None:
        kind = g.st.kind[token]
        if kind == Kind.BAR:
            row.state["notes"] = 0
        elif kind == Kind.PITCH and self.part in (-1, row.part):
            row.state["notes"] = row.state.get("notes", 0) + 1


class Plays(Constraint):
    """`part` plays at least one note in new bar `bar`: the bar cannot end before (while the
    grammar leaves another way on). A live accompaniment that falls silent for a bar would
    otherwise be the context of the next, and a small model then keeps silent."""

    def __init__(self, part: int, bar: int):
        self.part, self.bar = part, bar

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        if row.bar != self.bar or row.state.get("plays", False):
            return
        closing = g.only(g.bar_id) | g.only(g.close_id)
        if (mask & ~closing).any():
            mask &= ~closing

    def advance(self, g: Grammar, row: Row, token: int) -> None:
        if row.bar == self.bar and row.part == self.part and g.st.kind[token] == Kind.PITCH:
            row.state["plays"] = True


class BassLine(Constraint):
    """A bass under the harmony, in the bass part's block (`part`: 1 the accompaniment, -1
    every note of a piece without parts). `spans[k]` lists (position, pitch class) of new bar
    k: a span runs to the next one, across bar lines; its pitch class is the chord's bass (-1:
    any). In each span the part's first note is the bass: of that pitch class, between `low`
    and `high`, and below the part's notes still sounding (while a key allows); a later note
    lower than it is of its pitch class too, and no note of the part goes below `low`. The
    part plays in every span while a position in it is left.

    Every rule gives way where it would leave no token at all: other constraints (a density
    already reached, keys the kept music holds) come first."""

    def __init__(
        self,
        spans: Sequence[Sequence[tuple[int, int]]],
        part: int = 1,
        low: int = 0,
        high: int = 127,
    ):
        self.spans = [sorted((int(p), int(pc)) for p, pc in bar) for bar in spans]
        self.part, self.low, self.high = part, low, high
        self._starts: np.ndarray | None = None  # (S,) span starts from the first new bar

    def _layout(self, g: Grammar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every span's start, pitch class and end (grid steps from the first new bar; the
        last runs on)."""
        if self._starts is None:
            starts, pcs, at = [], [], 0
            for k, bar in enumerate(self.spans):
                starts += [at + p for p, _ in bar]
                pcs += [pc for _, pc in bar]
                at += g.bar_steps(k)
            self._starts, self._pcs = np.array(starts, dtype=np.int64), np.array(pcs)
            self._ends = np.append(self._starts[1:], np.iinfo(np.int64).max)
        return self._starts, self._pcs, self._ends

    def _mine(self, g: Grammar, row: Row) -> bool:
        return self.part < 0 or not g.parts or row.part == self.part

    def _span(self, g: Grammar, t: int) -> int:
        return int(np.searchsorted(self._layout(g)[0], t, side="right")) - 1

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        if row.bar < 0 or row.bar >= len(self.spans):
            return
        starts, pcs, ends = self._layout(g)
        played = row.state.setdefault("bass", {})  # span index -> its lowest note so far
        if self._mine(g, row) and row.position >= 0:
            i = self._span(g, row.now)
            value, pc = g.value, np.maximum(g.value, 0) % 12
            ok = value >= self.low
            if i >= 0 and i not in played:
                ok &= value <= self.high
                if pcs[i] >= 0:
                    ok &= pc == pcs[i]
                sounding = [p for p, end in row.state.get("sounding", []) if end > row.now]
                under = ok & (value < min(sounding, default=128))
                ok = under if (mask & g.of_kind[Kind.PITCH] & under).any() else ok
            elif i >= 0 and pcs[i] >= 0:
                ok &= (value >= played[i]) | (pc == pcs[i])
            _narrow(mask, ~g.of_kind[Kind.PITCH] | ok)
        # Play in every span of this bar still to come: not past the first one without its
        # bass, and the bar (or, in the part's block, the block) not closed before it.
        bar_end = row.bar_start + row.bar_len
        first = max(self._span(g, row.bar_start + max(row.position, 0)), 0)
        in_bar = int(np.searchsorted(starts, bar_end))  # spans starting before the bar's end
        missing = [s for s in range(first, in_bar) if s not in played]
        if not missing:
            return
        closing = g.only(g.bar_id) | g.only(g.close_id)
        if self._mine(g, row):
            late = g.of_kind[Kind.POSITION] & (row.bar_start + g.value >= ends[missing[0]])
            _narrow(mask, ~(closing | late | (g.of_kind[Kind.PART] if g.parts else False)))
        elif g.parts and not (row.parts_used >> self.part) & 1:
            _narrow(mask, ~closing)

    def advance(self, g: Grammar, row: Row, token: int) -> None:
        if g.st.kind[token] != Kind.DURATION or not self._mine(g, row) or row.bar < 0:
            return
        i = self._span(g, row.now)
        played = row.state.setdefault("bass", {})
        if i >= 0:
            played[i] = min(played.get(i, 128), row.pitch)
        end = row.now + int(g.duration_steps[token])
        sounding = [(p, e) for p, e in row.state.get("sounding", []) if e > row.now]
        row.state["sounding"] = [*sounding, (row.pitch, end)]


def _narrow(mask: np.ndarray, keep: np.ndarray) -> None:
    """mask &= keep, unless nothing would be left (a rule that gives way)."""
    if (mask & keep).any():
        mask &= keep
