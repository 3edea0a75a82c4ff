"""The grammar's constraints, one at a time, on rows a candidate may stand at: each narrows
what it must and nothing else (the copilot's and the live session's tests check them in
generated music)."""

from __future__ import annotations

import numpy as np

from pianomuse.generate.constraints import ChordPlan, Density, KeysFree, MaxPolyphony
from pianomuse.generate.grammar import Constraint, Grammar, Row
from pianomuse.harmony import parse_symbol
from pianomuse.tokenizer import Kind, PianoTokenizerV2


def test_keys_free_shortcut_is_the_full_narrowing(tok):
    """Past the held keys and far enough from the next kept onset, `KeysFree.narrow` skips
    its tests: on rows all through four bars, before and after that point, with and without
    kept music after the span, it leaves what the full narrowing leaves."""
    st = tok.structure
    rng = np.random.default_rng(0)
    free = np.zeros(128, dtype=np.int64)
    free[[48, 60, 64]] = [8, 20, 36]  # keys held into the first two bars
    for stop in (np.full(128, 10**9, dtype=np.int64), np.full(128, 100, dtype=np.int64)):
        keys = KeysFree(free, stop)  # a continuation, then an infill whose music resumes
        g = Grammar(st, 8, [st.id["TimeSig_4/4"]], 4, constraints=[keys])
        skipped = 0
        for _ in range(400):
            bar, last = int(rng.integers(0, 4)), rng.choice(list(Kind)[:8])
            at, pitch = int(rng.integers(-1, 32)), int(rng.integers(21, 109))
            row = Row(last=last, bar=bar, bar_start=32 * bar, bar_len=32, position=at, pitch=pitch)
            mask = rng.random(len(st.kind)) < 0.7
            a, b = mask.copy(), mask.copy()
            keys.narrow(g, row, a)
            keys.narrow_all(g, row, b)
            assert np.array_equal(a, b), row
            far = stop.min() >= row.bar_start + 32 + g.longest_duration
            skipped += row.now >= free.max() and far
        assert skipped > 100 if stop.min() > 1000 else skipped == 0


def test_keys_free_narrows_pitches_durations_and_positions(tok):
    st = tok.structure
    free = np.zeros(128, dtype=np.int64)
    stop = np.full(128, 10**9, dtype=np.int64)
    free[60] = 8  # C4 held by kept music until beat 1 (8 grid steps)
    stop[64] = 12  # E4 struck by kept music at beat 1.5
    keys = KeysFree(free, stop)
    g = Grammar(st, 8, [st.id["TimeSig_4/4"]], 1, constraints=[keys])
    row = Row(last=Kind.POSITION, bar=0, bar_len=32, position=4)
    allowed = g._row(row, False)
    assert not allowed[st.pitch_id[60]] and allowed[st.pitch_id[61]] and allowed[st.pitch_id[64]]
    row.position = 8
    assert g._row(row, False)[st.pitch_id[60]]
    # E4 at beat 0.5 may last at most one beat: up to the kept onset at beat 1.5.
    row = Row(last=Kind.VELOCITY, bar=0, bar_len=32, position=4, pitch=64)
    durations = np.flatnonzero(g._row(row, False))
    assert len(durations) and g.duration_steps[durations].max() == 8
    # A position where no key of the piano is free is not offered.
    free[:] = 0
    free[21:109] = 16
    g = Grammar(st, 8, [st.id["TimeSig_4/4"]], 1, constraints=[KeysFree(free, stop)])
    row = Row(last=Kind.TIMESIG, bar=0, bar_len=32)
    positions = st.value[np.flatnonzero(g._row(row, False) & (st.kind == Kind.POSITION))]
    assert positions.min() == 16


def _random_walk(g: Grammar, rows: int, rng: np.random.Generator) -> list[list[tuple]]:
    """Uniformly random allowed tokens until every row is done; each row's notes as
    (onset, end, part) in grid steps from the first bar."""
    state = g.start(rows)
    notes: list[list[tuple]] = [[] for _ in range(rows)]
    for _ in range(5000):
        if all(r.done for r in state):
            break
        allowed = g.allowed(state, force_close=False)
        tokens = np.array([rng.choice(np.flatnonzero(a)) for a in allowed])
        before = [(r.now, r.part) for r in state]
        g.advance(state, tokens)
        for i, t in enumerate(tokens):
            if g.st.kind[t] == Kind.DURATION:
                now, part = before[i]
                notes[i].append((now, now + int(g.duration_steps[t]), part))
    assert all(r.done for r in state)
    return notes


def _most_at_once(notes: list[tuple], part: int = -1) -> int:
    mine = [(a, b) for a, b, p in notes if part < 0 or p == part]
    return max((sum(a <= t < b for a, b in mine) for t, _ in mine), default=0)


def test_max_polyphony_holds_on_every_walk(tok):
    """Random walks of a piano without parts: never more than N keys at once, and without
    the rule the same walks go past N (the test can fail)."""
    st = tok.structure
    rng = np.random.default_rng(1)
    metre = [st.id["TimeSig_4/4"]]
    for most in (1, 3):
        g = Grammar(st, 8, metre, 3, constraints=[MaxPolyphony(most)])
        walks = _random_walk(g, 6, rng)
        assert all(_most_at_once(n) <= most for n in walks)
        assert sum(len(n) for n in walks) > 6
    free = _random_walk(Grammar(st, 8, metre, 3), 6, rng)
    assert max(_most_at_once(n) for n in free) > 3


def test_max_polyphony_counts_the_written_part_across_blocks():
    """With parts, the accompaniment's block comes after the melody's in each bar: counting
    every part, its notes see the melody's; counting the accompaniment alone, the melody is
    free."""
    tok = PianoTokenizerV2()
    st, ppb = tok.structure, tok.settings.positions_per_beat
    rng = np.random.default_rng(2)
    metre = [st.id["TimeSig_4/4"]]
    g = Grammar(st, ppb, metre, 2, constraints=[MaxPolyphony(2)], parts=True)
    for n in _random_walk(g, 4, rng):
        assert _most_at_once(n) <= 2
    g = Grammar(st, ppb, metre, 2, constraints=[MaxPolyphony(2, part=1)], parts=True)
    walks = _random_walk(g, 6, rng)
    assert all(_most_at_once(n, part=1) <= 2 for n in walks)
    assert max(_most_at_once(n) for n in walks) > 2


def test_a_density_reached_leaves_a_due_chord_its_position():
    """Once a bar has all its notes, a chord still due later in the bar keeps its position
    (and the chord its token): a density and a chord plan never leave no token."""
    v2 = PianoTokenizerV2()
    st = v2.structure
    c, g7 = v2.chord_ids(parse_symbol("C")), v2.chord_ids(parse_symbol("G"))
    rules = [ChordPlan([[(0, c), (48, g7)]]), Density(1, 1)]
    g = Grammar(st, v2.settings.positions_per_beat, [st.id["TimeSig_4/4"]], 1, constraints=rules)
    rows = g.start(1)

    def take(token: int) -> None:
        assert g.allowed(rows)[0, token], token
        g.advance(rows, np.array([token]))

    for name in ("Bar_None", "TimeSig_4/4", "Position_0"):
        take(st.id[name])
    take(c[0])  # the first chord, then the bar's one note
    take(st.pitch_id[60])
    take(int(np.flatnonzero(g.allowed(rows)[0])[0]))  # a velocity
    take(int(np.flatnonzero(g.allowed(rows)[0])[0]))  # a duration
    assert np.flatnonzero(g.allowed(rows)[0]).tolist() == [st.id["Position_48"]]
    take(st.id["Position_48"])
    assert np.flatnonzero(g.allowed(rows)[0]).tolist() == [g7[0]]


class _Only(Constraint):
    """A toy rule: only tokens of these kinds (or, with `block`, no note of this part)."""

    def __init__(self, *kinds: Kind, block: int = -1):
        self.kinds, self.block = kinds, block

    def narrow(self, g: Grammar, row: Row, mask: np.ndarray) -> None:
        if self.block >= 0:
            if row.part == self.block:
                mask &= ~(g.of_kind[Kind.POSITION] | g.of_kind[Kind.PITCH])
            return
        mask &= np.any([g.of_kind[k] for k in self.kinds], axis=0)


def test_rules_that_cannot_all_hold_give_way_in_order_and_dead_end_blocks_stay_closed():
    """Two rules that together leave nothing: the earlier holds, the later is skipped for
    that token (strictly, nothing is left). And a part whose block no note could follow is
    never opened while another part can be."""
    st = PianoTokenizerV2().structure
    g = Grammar(st, 24, [st.id["TimeSig_4/4"]], 2,
                constraints=[_Only(Kind.POSITION), _Only(Kind.BAR)])  # fmt: skip
    row = Row(last=Kind.TIMESIG, bar=0, bar_len=96)
    assert not g._row(row, False, strict=True).any()
    kept = g._row(row, False)
    assert kept.any() and np.array_equal(kept, kept & g.of_kind[Kind.POSITION])
    # With parts: the melody's block (part 0) could hold no note; the accompaniment's can.
    g = Grammar(st, 24, [st.id["TimeSig_4/4"]], 2, parts=True, constraints=[_Only(block=0)])
    allowed = g._row(Row(last=Kind.TIMESIG, bar=0, bar_len=96), False)
    assert [st.vocab[t] for t in np.flatnonzero(allowed & g.of_kind[Kind.PART])] == [
        "Part_Accompaniment"
    ]
