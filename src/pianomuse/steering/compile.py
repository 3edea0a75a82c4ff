"""Steering compiled: a request (`Steering`) and where the new music goes (`Scene`) become
the grammar every candidate is sampled through, with one constraint per rule.

This is the only place that builds constraints: the copilot (continue, infill, arrange,
sketch) and the live session describe their new bars as a `Scene` and call
`compile_steering`. A new control is a field of `Steering`, one rule below, and its
constraint in `pianomuse.generate.constraints`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pianomuse.errors import FieldError
from pianomuse.generate.constraints import (
    BassLine,
    ChordPlan,
    Density,
    GivenBlock,
    KeysFree,
    MaxPolyphony,
    OnePart,
    PerRow,
    Plays,
    Register,
    Scale,
)
from pianomuse.generate.grammar import Constraint, Grammar
from pianomuse.harmony import parse_progression
from pianomuse.planner import Selector, harmony_of, plan_chords
from pianomuse.steering.request import RANGE_PARTS, Steering
from pianomuse.tokenizer import Kind, Tokenizer

Plan = list[list[tuple[int, list[int]]]]  # per new bar: (position, [Chord id, Bass id?])
WRITES = {"melody": 0, "accompaniment": 1}  # the part a job writes alone
PASSING_BEATS = 0.5  # a chromatic passing note lasts at most half a beat
DENSITY_SLACK = 0.15  # every bar within +-15 % of the density asked (+-20 % promised: rounding)
# The texture kept where nothing else asks (`steering.texture`): each new bar's notes within
# these multiples of the context's last bars' notes a bar, and the bass line from a fourth
# below to a fifth above their bass register (10th-percentile pitch).
RECENT_BARS = 4
KEPT_DENSITY = (0.5, 2.0)
KEPT_REGISTER = (5, 7)


@dataclass(frozen=True)
class Scene:
    """Where the new music goes, as far as steering needs to know it."""

    tok: Tokenizer  # the model's tokenizer: vocabulary, grid, chords and parts
    metres: Sequence[int]  # TimeSig id of each new bar (the last one repeats)
    bars: int | None  # new bars to write (None: until the token budget runs out)
    prompt: np.ndarray  # the tokens the model reads first ("as-context" densities)
    close_id: int | None = None  # the token that ends the stream (None: the next Bar)
    parts: bool = False  # the new bars hold part blocks
    write: int = -1  # the part the new music is (0 melody, 1 accompaniment; -1 every part)
    guess_other: bool = False  # the other part is written too, as a guess (live accompaniment)
    keys: tuple[np.ndarray, np.ndarray] | None = None  # kept keys' release and next onset
    given: Sequence[Sequence[int]] | None = None  # per new bar: the given part's block, or []
    given_opens: bool = True  # a given block opens its bar (else the model's may come first)
    piece_chords: Plan | None = None  # the piece's own chords in the new bars (arrange)
    plays: int | None = None  # a new bar in which the written part must play
    context_density: float | None = None  # notes a bar "as the context", if not the prompt's
    candidates: int = 1  # rows written at once (a chord plan each, when planned)
    history: np.ndarray | None = None  # the whole piece's tokens the planner reads (or prompt)
    planner: Selector | None = None  # plans chords where none are given (`steering.plan`)


@dataclass(frozen=True)
class Steered:
    """What compiling gives: the grammar, and what the sidecar records of it."""

    grammar: Grammar
    plan: Plan | None  # the chords written, per new bar
    density: dict[str, float] | None  # notes a bar: the context's and the target
    plans: list[str] | None = None  # the chords planned, a progression per candidate


def compile_steering(steering: Steering, scene: Scene) -> Steered:
    """The grammar of `scene`'s new bars under every request of `steering`."""
    _check_parts(steering, scene)
    plan = _chord_plan(steering.chords, scene)
    given = scene.given
    if given is not None and scene.piece_chords is not None:
        chords = plan if plan is not None else scene.piece_chords
        given = [
            _with_chords(scene.tok, block, bar) for block, bar in zip(given, chords, strict=True)
        ]
        loose = [[] if given[k] else bar for k, bar in enumerate(chords)]
        plan = chords
    else:
        loose = plan
    constraints: list[Constraint] = []
    if scene.keys is not None:
        constraints.append(KeysFree(*scene.keys))
    if steering.max_polyphony is not None:
        constraints.append(MaxPolyphony(steering.max_polyphony, part=scene.write))
    constraints += _scale(steering, scene) + _register(steering)
    plans = _plans(steering, scene) if plan is None and given is None else None
    planned = _planned(steering, scene, plans or [])
    if loose is not None:
        constraints.append(ChordPlan(loose))
    constraints += [PerRow([chords for chords, _ in planned])] if planned else []
    density, report = _density(steering, scene)
    constraints += density + _bass_line(steering, scene, plan)
    basses = [bass for _, line in planned for bass in line]
    constraints += [PerRow(basses)] if basses else []
    if scene.write >= 0 and not scene.guess_other:
        constraints.append(OnePart(scene.write))
    if scene.plays is not None:
        constraints.append(Plays(scene.write, scene.plays))
    if given is not None:  # decides last: it forces whole blocks
        constraints.append(GivenBlock(given, opens=scene.given_opens))
    grammar = Grammar(
        scene.tok.structure,
        scene.tok.settings.positions_per_beat,
        scene.metres,
        scene.bars,
        close_id=scene.close_id,
        constraints=constraints,
        parts=scene.parts,
    )
    return Steered(grammar, plan, report, plans)


def _check_parts(steering: Steering, scene: Scene) -> None:
    """A request the new bars cannot honour is refused, never dropped."""
    for name, part in RANGE_PARTS.items():
        if part < 0 or getattr(steering, name) is None:
            continue
        if not scene.parts:
            raise FieldError(name, "needs a piece with a melody part (a track named melody)")
        if scene.write >= 0 and part != scene.write:
            raise FieldError(name, "shapes a part that is given here, not written")
    if steering.bass_range is not None and scene.write == WRITES["melody"]:
        raise FieldError("bass_range", "shapes the accompaniment, which is given here")


def _scale(steering: Steering, scene: Scene) -> list[Constraint]:
    if steering.pitch_classes is None:
        return []
    ppb = scene.tok.settings.positions_per_beat
    passing = int(PASSING_BEATS * ppb) if steering.chromatic else 0
    return [Scale(steering.pitch_classes, passing)]


def _register(steering: Steering) -> list[Constraint]:
    return [Register(steering.registers)] if steering.registers else []


def _density(steering: Steering, scene: Scene) -> tuple[list[Constraint], dict | None]:
    """The density asked (or kept from the context's last bars: `steering.texture`), as a
    constraint, and the sidecar's record of it."""
    if steering.density is None:
        recent = _recent(steering, scene)
        if recent is None:
            return [], None
        low, high = int(np.ceil(KEPT_DENSITY[0] * recent[1])), int(KEPT_DENSITY[1] * recent[1])
        return [Density(low, max(high, 1), scene.write)], {"kept": [low, max(high, 1)]}
    context = scene.context_density
    if context is None:
        context = notes_per_bar(scene.tok, scene.prompt, scene.write)
    if steering.notes_per_bar is not None:
        target = steering.notes_per_bar
    elif context is None:
        raise FieldError("density", "without a piece, give notes per bar (a number)")
    else:
        target = steering.density_factor * context
    low = int(np.ceil((1 - DENSITY_SLACK) * target))
    high = max(int(np.floor((1 + DENSITY_SLACK) * target)), 1)
    report = {"context": round(context or 0.0, 2), "target": round(target, 2)}
    return [Density(low, high, scene.write)], report


def _plans(steering: Steering, scene: Scene) -> list[str] | None:
    """Chords for the new bars planned from the piece (`pianomuse.planner`), a progression
    per candidate, the best first (again, if there are fewer): where none are given,
    planning is on, and the model and the piece have chords."""
    if steering.chords is not None or steering.plan == "off" or scene.planner is None:
        return None
    if not scene.tok.has_chords or scene.bars is None:
        return None
    history = scene.prompt if scene.history is None else scene.history
    metres = [scene.metres[min(k, len(scene.metres) - 1)] for k in range(scene.bars)]
    beats = [max(int(round(scene.tok.structure.bar_beats[m])), 1) for m in metres]
    plans = plan_chords(harmony_of(scene.tok, history), beats, scene.candidates, scene.planner)
    if not plans:
        return None
    return [plans[i % len(plans)].progression() for i in range(scene.candidates)]


def _planned(
    steering: Steering, scene: Scene, plans: Sequence[str]
) -> list[tuple[ChordPlan, list[Constraint]]]:
    """Per candidate, the chords planned for it and the bass line under them (under chords
    every candidate has one, or, writing a melody, none)."""
    out = []
    for chords in plans:
        plan = _chord_plan(chords, scene)
        bass = _bass_line(steering, scene, plan)
        out.append((ChordPlan(plan), bass))
    return out


def _chord_plan(chords: str | None, scene: Scene) -> Plan | None:
    """Chords in the new bars (repeated as needed), from a progression as `--chords` takes."""
    if chords is None:
        return None
    if not scene.tok.has_chords:
        raise FieldError("chords", "need a model whose tokenizer has chords (version 2)")
    st, ppb = scene.tok.structure, scene.tok.settings.positions_per_beat
    metres = list(scene.metres)
    chords = parse_progression(chords, float(st.bar_beats[metres[0]]))
    plan = []
    for k in range(max(scene.bars or 1, len(metres))):
        length = st.bar_beats[metres[min(k, len(metres) - 1)]]
        bar = []
        for beat, chord in chords[k % len(chords)]:
            if not 0 <= beat < length:
                problem = f"beat {beat:g} of bar {k + 1} lies outside its {length:g} beats"
                raise FieldError("chords", problem)
            bar.append((int(round(beat * ppb)), scene.tok.chord_ids(chord)))
        plan.append(bar)
    return plan


def _bass_line(steering: Steering, scene: Scene, plan: Plan | None) -> list[Constraint]:
    """Under chords the written accompaniment's lowest voice plays each chord's bass, inside
    the bass range if one is asked (without chords, each span's lowest note keeps to it)."""
    bass = steering.bass
    if bass is None and (recent := _recent(steering, scene)) is not None:
        bass = (max(recent[0] - KEPT_REGISTER[0], 21), min(recent[0] + KEPT_REGISTER[1], 108))
    if scene.write == WRITES["melody"] or (plan is None and bass is None):
        return []
    st = scene.tok.structure
    if plan is not None:
        # A chord's ids are [Chord, Bass?]: the last one's value is the pitch class the bass
        # plays (the Chord token's value is its root; -1 for no chord).
        spans = [[(p, int(st.value[ids[-1]])) for p, ids in bar] for bar in plan]
    else:
        spans = [[(0, -1)] for _ in range(max(scene.bars or 1, len(scene.metres)))]
    low, high = bass if bass is not None else (0, 127)
    return [BassLine(spans, WRITES["accompaniment"], low, high)]


def _recent(steering: Steering, scene: Scene) -> tuple[int, float] | None:
    """The bass register (10th-percentile pitch) and notes a bar of the written part in the
    prompt's last `RECENT_BARS` bars, where the texture is kept; None where it is free, or
    the prompt has no notes of that part."""
    if steering.texture == "free" or scene.write == WRITES["melody"]:
        return None
    st, ids = scene.tok.structure, np.asarray(scene.prompt, dtype=np.int64)
    starts = st.bar_starts(ids)
    if len(starts) == 0:
        return None
    tail = ids[starts[max(len(starts) - RECENT_BARS, 0)] :]
    pitch = (st.kinds(tail) == Kind.PITCH) & _in_part(st, tail, scene.write)
    if not pitch.any():
        return None
    bars = min(RECENT_BARS, len(starts))
    return int(np.percentile(st.value[tail[pitch]], 10)), float(pitch.sum()) / bars


def _with_chords(tok: Tokenizer, block: Sequence[int], chords: Sequence[Any]) -> list[int]:
    """A given part's block (from its Part token) with its chords replaced by `chords`
    [(position, ids)], each at its position (one made for it if the part rests there)."""
    if not block:
        return []
    st = tok.structure
    groups: dict[int, list[int]] = {}  # position -> its tokens, chords aside
    at = 0
    for t in list(block)[1:]:
        kind = st.kind[t]
        if kind == Kind.POSITION:
            at = int(st.value[t])
            groups.setdefault(at, [])
        elif kind not in (Kind.CHORD, Kind.BASS):
            groups[at].append(t)
    marks = dict((p, ids) for p, ids in chords)
    for p in marks:
        groups.setdefault(p, [])
    out = [int(block[0])]
    for p in sorted(groups):
        tempo = [t for t in groups[p] if st.kind[t] == Kind.TEMPO]
        rest = [t for t in groups[p] if st.kind[t] != Kind.TEMPO]
        out += [st.id[f"Position_{p}"], *tempo, *marks.get(p, []), *rest]
    return out


def notes_per_bar(tok: Tokenizer, ids: np.ndarray, part: int = -1) -> float | None:
    """Notes per bar of `ids` (of `part` alone, if >= 0); None without a bar."""
    st = tok.structure
    ids = np.asarray(ids, dtype=np.int64)
    k = st.kinds(ids)
    bars = int((k == Kind.BAR).sum())
    if bars == 0:
        return None
    notes = (k == Kind.PITCH) & _in_part(st, ids, part)
    return float(notes.sum()) / bars


def _in_part(st: Any, ids: np.ndarray, part: int) -> np.ndarray:
    """Whether each token is in `part`'s block (every token for part -1)."""
    if part < 0:
        return np.ones(len(ids), dtype=bool)
    k = st.kinds(ids)
    # Each token's part: the last Part token before it in its bar (-1: none yet).
    marks = np.where(k == Kind.PART, st.value[ids], np.where(k == Kind.BAR, -1, -2))
    last = np.maximum.accumulate(np.where(marks != -2, np.arange(len(ids)), 0))
    current = np.where(marks[last] == -2, -1, marks[last])
    return current == part
