"""Time signatures as the tokens read them: one clean metre map per piece.

A MIDI file's time signatures are messy: several at one tick (1 in 8 raw POP909 files has
4/4 and 1/4 at tick 0), metres the vocabulary lacks (7/8, 2/2, 8/4 ...), changes in the
middle of a bar. Before tokenizing, `normalise_metre` turns them into the one map that the
tokens then carry, so that where the tokens put a bar line is where everything else puts it:

- several at one tick: the last one wins, as a sequencer applies them in file order;
- a metre the vocabulary lacks is mapped to one with the same bar length (2/2 -> 4/4,
  4/8 -> 2/4, 12/16 -> 6/8), or its bars are split into equal bars it has (8/4 -> two 4/4,
  9/8 -> three 3/8); a bar length that no metre of the vocabulary divides (7/8, 5/8, 13/16
  ...) is refused with one line naming it;
- a change in the middle of a bar moves to the next bar line (what miditok does too);
- equal successive metres are merged.
"""

from __future__ import annotations

from fractions import Fraction

from symusic import Score, TimeSignature

from pianomuse.tokenizer.midi_io import MidiInputError

Metre = tuple[int, int]  # (numerator, denominator)


def bar_beats(metre: Metre) -> Fraction:
    """Length of one bar in quarter-note beats."""
    return Fraction(4 * metre[0], metre[1])


def map_metre(metre: Metre, supported: list[Metre]) -> tuple[Metre, int] | None:
    """(a supported metre, how many of its bars make one bar of `metre`), or None when no
    supported metre divides its bar length. Prefers the same length (k = 1), then the
    fewest bars; among equals, the denominator closest to the original's."""
    if metre in supported:
        return metre, 1
    length = bar_beats(metre)
    best: tuple[int, int, Metre] | None = None
    for m in supported:
        k = length / bar_beats(m)
        if k.denominator == 1:
            key = (int(k), abs(m[1] - metre[1]), m)
            best = key if best is None or key < best else best
    return None if best is None else (best[2], best[0])


def normalise_metre(score: Score, supported: list[Metre], name: str = "input") -> Score:
    """A copy of `score` whose time-signature map is the one the tokens will carry (see the
    module docstring); raises `MidiInputError` for a metre that cannot be mapped."""
    tpq = score.tpq
    last_at: dict[int, Metre] = {}
    for ts in score.time_signatures:  # file order: the last one at a tick wins
        last_at[int(ts.time)] = (int(ts.numerator), int(ts.denominator))
    if 0 not in last_at:
        last_at[0] = (4, 4)  # the MIDI default before any time signature
    changes: list[tuple[int, Metre]] = []  # (tick, metre), on bar lines, metres supported
    bar_start, bar_len = 0, 0  # the current bar, in ticks
    for tick, metre in sorted(last_at.items()):
        mapped = map_metre(metre, supported)
        if mapped is None:
            shown = ", ".join(f"{n}/{d}" for n, d in sorted(supported, key=bar_beats))
            raise MidiInputError(
                f"{name}: the metre {metre[0]}/{metre[1]} (at beat {tick / tpq:g}) cannot be "
                f"written with this model's metres ({shown})"
            )
        new, _ = mapped
        if tick <= bar_start:  # an earlier change was moved past this one: same bar line
            tick = bar_start
        elif bar_len:  # a change inside a bar moves to the bar's end
            tick = bar_start + -(-(tick - bar_start) // bar_len) * bar_len
        if changes and changes[-1][0] == tick:
            changes.pop()  # a later change lands on the same bar line: it wins
        if not changes or changes[-1][1] != new:
            changes.append((tick, new))
        bar_start = changes[-1][0]
        bar_len = max(int(bar_beats(changes[-1][1]) * tpq), 1)
    out = score.copy()
    out.time_signatures = [TimeSignature(t, n, d) for t, (n, d) in changes]
    return out
