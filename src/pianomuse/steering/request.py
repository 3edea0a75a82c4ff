"""What the user asks of the new music beyond sampling: chords, a key or scale, registers,
a density, a polyphony. One frozen object, built once at the edge (command line, web API,
live socket, Python) and passed whole.

Its fields are the one table of steering controls: each carries its help line and limits
(`control`), and the command line's options, the web API's JSON fields and the sidecar are
made from them (`controls`). A new control is a field here, its rule in
`pianomuse.steering.compile`, and the constraint it becomes in `pianomuse.generate.constraints`.
Every value is checked when the object is made: one line naming the field.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Any

from pianomuse.errors import FieldError
from pianomuse.harmony import PITCH_CLASSES, note_number, parse_progression, pitch_class, scale_of
from pianomuse.limits import MAX_NOTES_PER_BAR

DENSITY_WORDS = {"sparser": 0.5, "as-context": 1.0, "busier": 1.5}
# The parts a range can be asked for; "all" is every note, "bass" the accompaniment's lowest
# voice (see `pianomuse.generate.constraints.BassLine`).
RANGE_PARTS = {"range": -1, "melody_range": 0, "accompaniment_range": 1}
BASS_RANGE = "bass_range"
PLANS = ("auto", "off")
TEXTURES = ("keep", "free")


@dataclass(frozen=True)
class Control:
    """How a steering field is offered to users."""

    help: str  # one line: the command line's help and the JSON field's description
    max_length: int | None = None  # longest text accepted (the web API checks it first)
    low: int | None = None  # smallest number accepted
    high: int | None = None  # largest number accepted


def control(help: str, default: Any = None, **limits: Any) -> Any:
    return field(default=default, metadata={"control": Control(help, **limits)})


def derived() -> Any:
    return field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True)
class Steering:
    """The user's requests (each field optional; every one is exact, never a suggestion)."""

    chords: str | None = control(
        'Chords of the new bars: "C G Am F" (a bar each, repeated) or "C:2 G:2 Am F".',
        max_length=2000,
    )
    key: str | None = control(
        'Key: "A minor", "D dorian" ... (no note outside its scale).', max_length=40
    )
    scale: str | None = control(
        'Scale as pitch classes instead of a key: "C,D,E,G,A" or "0,2,4,7,9".', max_length=80
    )
    chromatic: bool = control("Let short notes outside the scale pass by.", default=False)
    range: str | None = control("Range of every note: LOW-HIGH, e.g. C2-C6.", max_length=20)
    melody_range: str | None = control("Range of the melody part, e.g. C5-C6.", max_length=20)
    accompaniment_range: str | None = control(
        "Range of the accompaniment, e.g. C2-C5.", max_length=20
    )
    bass_range: str | None = control(
        "Range of the bass line (the accompaniment's lowest voice), e.g. C2-C3.", max_length=20
    )
    density: str | None = control(
        "Notes per bar (a number), or sparser, as-context, busier (0.5x, 1x, 1.5x).",
        max_length=20,
    )
    max_polyphony: int | None = control(
        "At most N keys sounding at once in the new music.", low=1, high=88
    )
    texture: str = control(
        "keep (where nothing else asks, the new bars stay in the context's bass register and "
        "near its notes a bar) or free.",
        default="keep",
        max_length=8,
    )
    plan: str = control(
        "Chords first: auto (without --chords, plan the new bars' chords from the song, a "
        "plan per candidate) or off (write freely).",
        default="auto",
        max_length=8,
    )
    # Read off the fields above when the object is made, for the compiler:
    pitch_classes: tuple[int, ...] | None = derived()  # the scale (a key's, or the one given)
    registers: dict[int, tuple[int, int]] = derived()  # part (-1: every note) -> lowest, highest
    bass: tuple[int, int] | None = derived()  # the bass line's lowest and highest key
    density_factor: float | None = derived()  # notes a bar, as a multiple of the context's
    notes_per_bar: float | None = derived()  # notes a bar, as a number

    def __post_init__(self) -> None:
        for name, _, default, _ in self.controls():  # "" is "not asked", as in a form
            if getattr(self, name) == "":
                object.__setattr__(self, name, default)
        if self.key is not None and self.scale is not None:
            raise FieldError("scale", "and key both give the scale: give one of them")
        scale = _parse("key", scale_of, self.key) if self.key is not None else None
        if self.scale is not None:
            scale = _scale_classes(self.scale)
        registers = {part: _range(name, getattr(self, name)) for name, part in RANGE_PARTS.items()}
        bass = _range(BASS_RANGE, self.bass_range)
        if bass is not None and bass[1] - bass[0] < 11:
            raise FieldError(BASS_RANGE, f"{self.bass_range} is narrower than an octave")
        for name in ("range", "accompaniment_range"):
            outer = registers[RANGE_PARTS[name]]
            inside = (
                None
                if bass is None or outer is None
                else (max(bass[0], outer[0]), min(bass[1], outer[1]))
            )
            if inside is not None and inside[1] - inside[0] < 11:
                what = f"the {name} {getattr(self, name)}"
                raise FieldError(BASS_RANGE, f"leaves less than an octave inside {what}")
        if scale is not None and not self.chromatic:
            for name in (*RANGE_PARTS, BASS_RANGE):
                span = registers.get(RANGE_PARTS[name]) if name in RANGE_PARTS else bass
                if span is not None and not any(
                    p % 12 in scale for p in range(span[0], span[1] + 1)
                ):
                    what = "key" if self.key is not None else "scale"
                    raise FieldError(name, f"{getattr(self, name)} holds no note of the {what}")
        object.__setattr__(self, "pitch_classes", scale)
        object.__setattr__(self, "registers", {p: r for p, r in registers.items() if r})
        object.__setattr__(self, "bass", bass)
        object.__setattr__(self, "density_factor", None)
        object.__setattr__(self, "notes_per_bar", None)
        if self.density in DENSITY_WORDS:
            object.__setattr__(self, "density_factor", DENSITY_WORDS[self.density])
        elif self.density is not None:
            value = _parse("density", float, self.density)
            if not 0 < value <= MAX_NOTES_PER_BAR:
                problem = f"must be more than 0 and at most {MAX_NOTES_PER_BAR} notes a bar"
                raise FieldError("density", problem)
            object.__setattr__(self, "notes_per_bar", value)
        if self.max_polyphony is not None:
            c = _control("max_polyphony")
            if not c.low <= self.max_polyphony <= c.high:
                raise FieldError("max_polyphony", f"must be between {c.low} and {c.high} keys")
        if self.plan not in PLANS:
            raise FieldError("plan", f"is auto or off, not {self.plan!r}")
        if self.texture not in TEXTURES:
            raise FieldError("texture", f"is keep or free, not {self.texture!r}")
        if self.chords is not None:
            _parse("chords", parse_progression, self.chords, 4.0)
            self._check_chords_in_scale()

    @staticmethod
    def names() -> list[str]:
        """The steering controls' names (the fields users set)."""
        return [f.name for f in fields(Steering) if "control" in f.metadata]

    @staticmethod
    def controls() -> list[tuple[str, Any, Any, Control]]:
        """(name, type, default, `Control`) of every field: what the command line and the
        web API make their options and fields from."""
        hints = typing.get_type_hints(Steering)
        return [
            (f.name, hints[f.name], f.default, f.metadata["control"])
            for f in fields(Steering)
            if "control" in f.metadata
        ]

    @classmethod
    def from_fields(cls, values: Any) -> Steering:
        """The steering fields of a request body (a dict, or an object with them as
        attributes); other keys are not looked at."""
        get = values.get if isinstance(values, dict) else lambda k, d: getattr(values, k, d)
        return cls(**{name: get(name, None) for name in cls.names() if get(name, None) is not None})

    def as_dict(self) -> dict[str, Any]:
        """The sidecar's record of the requests: the fields asked (not left at their default),
        as `from_fields` takes them."""
        asked = {name: getattr(self, name) for name in self.names()}
        defaults = {name: default for name, _, default, _ in self.controls()}
        return {name: v for name, v in asked.items() if v != defaults[name]}

    def _check_chords_in_scale(self) -> None:
        if self.pitch_classes is None or self.chromatic:
            return
        for bar in parse_progression(self.chords, 4.0):
            for _, chord in bar:
                out = sorted(chord.tones - set(self.pitch_classes))
                if out:
                    names = ", ".join(PITCH_CLASSES[p] for p in out)
                    raise FieldError(
                        "chords",
                        f"{chord.symbol()} has {names}, outside the scale of the key "
                        "(allow chromatic notes, or change one of them)",
                    )


def _control(name: str) -> Control:
    return next(c for n, _, _, c in Steering.controls() if n == name)


def _parse(name: str, parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except ValueError as e:
        raise FieldError(name, str(e)) from None


def _range(name: str, text: str | None) -> tuple[int, int] | None:
    """'C2-C6' -> (36, 84): a range of piano keys, lowest first."""
    if text is None:
        return None
    lo, sep, hi = text.partition("-")
    if not sep:
        raise FieldError(name, f"takes LOW-HIGH (e.g. C4-C6), not {text!r}")
    low, high = _parse(name, note_number, lo), _parse(name, note_number, hi)
    if not 21 <= low <= high <= 108:
        raise FieldError(name, f"{text} is not a range of piano keys (A0-C8)")
    return low, high


def _scale_classes(text: str) -> tuple[int, ...]:
    """Pitch classes, sorted, from "C,D,E,G,A" or "0,2,4,7,9"."""
    out = set()
    for item in (x.strip() for x in text.split(",") if x.strip()):
        try:
            out.add(int(item) if item.isdigit() else pitch_class(item[0].upper() + item[1:]))
        except ValueError:
            raise FieldError("scale", f"{item!r} is not a pitch class (C..B or 0..11)") from None
    if not out or any(not 0 <= p < 12 for p in out):
        raise FieldError("scale", "needs pitch classes between 0 (C) and 11 (B)")
    return tuple(sorted(out))


NO_STEERING = Steering()
