"""The rules on top of the grammar (`pianomuse.generate.grammar`): each narrows the mask of
what a candidate may take next, given where it stands (`Row`), and may keep its own state in
`Row.state`. `pianomuse.steering.compile` turns a request into these."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pianomuse.generate.grammar import Constraint, Grammar, Row
from pianomuse.tokenizer import Kind


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
        return ((free <= at) & (stop > at)).any(axis=0) | chord_due(row, at)

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        # Past the last held key and before the first kept onset, by more than the rest of
        # the bar and the longest note, no key is taken (most of a continuation's bars): the
        # three vocabulary-wide tests below are skipped there.
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


def chord_due(row: Row, at: np.ndarray) -> np.ndarray:
    """Whether a given chord is to be written at each position of `at` (counted from the
    first new bar; see `ChordPlan`): a position that other rules must leave open."""
    chord_at = row.state.get("chord_at")
    return at == row.bar_start + (chord_at if chord_at is not None else -1)


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
        kind = g.kind_of(token)
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
        if g.kind_of(token) == Kind.BAR:
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
            # A new block would need a note too (a Part is followed by a Position); a
            # position where a given chord is due stays open for the chord alone.
            due = g.of_kind[Kind.POSITION] & chord_due(row, row.bar_start + g.value)
            mask &= ~(g.of_kind[Kind.PITCH] | g.of_kind[Kind.POSITION] | g.of_kind[Kind.PART]) | due
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
        kind = g.kind_of(token)
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
        if row.bar == self.bar and row.part == self.part and g.kind_of(token) == Kind.PITCH:
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
        if g.kind_of(token) != Kind.DURATION or not self._mine(g, row) or row.bar < 0:
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


class MaxPolyphony(Constraint):
    """At most `most` keys sounding at once among the new notes (of `part` alone, if >= 0):
    a key is struck only where fewer sound, and held no longer than until the next onset at
    which `most` would sound. Notes are kept as (onset, end) in grid steps from the first new
    bar, so a bar's second block sees the first block's notes."""

    def __init__(self, most: int, part: int = -1):
        self.most, self.part = most, part

    def _mine(self, g: Grammar, row: Row) -> bool:
        return self.part < 0 or not g.parts or row.part == self.part

    def _sounding(self, row: Row, at: np.ndarray) -> np.ndarray:
        """How many of the notes written sound at each instant of `at`."""
        notes = np.array(row.state.get("poly", []), dtype=np.int64).reshape(-1, 2)
        return ((notes[:, :1] <= at) & (notes[:, 1:] > at)).sum(axis=0)

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        if row.bar < 0 or not self._mine(g, row):
            return
        if row.last == Kind.VELOCITY:
            onsets = np.array(sorted({on for on, _ in row.state.get("poly", [])}), dtype=np.int64)
            later = onsets[onsets > row.now]
            full = later[self._sounding(row, later) >= self.most]
            if len(full):  # the note must end by the first instant as many already sound
                mask &= ~g.of_kind[Kind.DURATION] | (g.duration_steps <= full[0] - row.now)
            return
        if self._sounding(row, np.array([row.now]))[0] >= self.most and row.position >= 0:
            mask &= ~g.of_kind[Kind.PITCH]
        position = g.of_kind[Kind.POSITION] & mask
        if position.any():
            at = row.bar_start + g.value[position]
            position[position] = (self._sounding(row, at) >= self.most) & ~chord_due(row, at)
            mask &= ~position

    def advance(self, g: Grammar, row: Row, token: int) -> None:
        kind = g.kind_of(token)
        if kind == Kind.BAR:  # notes over before the new bar can no longer overlap one
            row.state["poly"] = [n for n in row.state.get("poly", []) if n[1] > row.bar_start]
        elif kind == Kind.DURATION and row.bar >= 0 and self._mine(g, row):
            end = row.now + int(g.duration_steps[token])
            row.state["poly"] = [*row.state.get("poly", []), (row.now, end)]


class PerRow(Constraint):
    """Rules of their own for each candidate: row i follows `rules[i % len(rules)]` (a chord
    plan and its bass line per candidate, when each writes to a plan of its own)."""

    def __init__(self, rules: Sequence[Constraint]):
        self.rules = list(rules)

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        self.rules[row.index % len(self.rules)].narrow(g, row, mask)

    def advance(self, g: Grammar, row: Row, token: int) -> None:
        self.rules[row.index % len(self.rules)].advance(g, row, token)
