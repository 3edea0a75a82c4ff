"""What the user asks of the new music beyond sampling: chords, a key or scale, registers,
a density. One settings object, built once at the edge (command line, web API, Python) and
passed whole; every field goes into the sidecar, so a result can be made again from it.

Every request is exact, not a suggestion: each becomes a grammar constraint, so a token that
would break it is never sampled (`pianomuse.generate.grammar`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pianomuse.errors import FieldError
from pianomuse.generate.grammar import Constraint, Density, Register, Scale
from pianomuse.harmony import PITCH_CLASSES, Chord, parse_progression, pitch_class

# Steps of the modes above their tonic.
MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic minor": (0, 2, 3, 5, 7, 9, 11),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
DENSITY_WORDS = {"sparser": 0.5, "as-context": 1.0, "busier": 1.5}
PARTS = {"melody": 0, "accompaniment": 1, "all": -1}
# The bass is the accompaniment's lowest voice, not a part of its own (see `BassLine`).
BASS = "bass"
PASSING_BEATS = 0.5  # a chromatic passing note lasts at most half a beat


def note_number(name: str) -> int:
    """'C4' -> 60, 'F#2' -> 42, 'Bb5' -> 82; a plain number is taken as it is."""
    if name.strip().isdigit():
        return int(name)
    m = re.fullmatch(r"([A-Ga-g][#b]?)(-?\d)", name.strip())
    if m is None:
        raise ValueError(f"{name!r} is not a note (for example C4, F#2, Bb5)")
    return 12 * (int(m[2]) + 1) + pitch_class(m[1][0].upper() + m[1][1:])


def range_field(part: str) -> str:
    """The setting a part's range comes from: range, melody_range, accompaniment_range,
    bass_range."""
    return "range" if part == "all" else f"{part}_range"


def scale_classes(text: str) -> tuple[int, ...]:
    """Pitch classes from "C,D,E,G,A" or "0,2,4,7,9"."""
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        try:
            out.append(int(item) if item.isdigit() else pitch_class(item[0].upper() + item[1:]))
        except ValueError:
            raise FieldError("scale", f"{item!r} is not a pitch class (C..B or 0..11)") from None
    return tuple(out)


def scale_of(key: str) -> tuple[int, ...]:
    """Pitch classes of "A minor", "D dorian", "Eb major", "F# blues" ..."""
    tonic, _, mode = key.strip().partition(" ")
    mode = mode.strip().lower() or "major"
    try:
        root = pitch_class(tonic[0].upper() + tonic[1:])
    except (ValueError, IndexError):
        raise ValueError(f"{key!r}: {tonic!r} is not a key note") from None
    if mode not in MODES:
        raise ValueError(f"{key!r}: the mode must be one of {', '.join(MODES)}")
    return tuple(sorted((root + s) % 12 for s in MODES[mode]))


@dataclass(frozen=True)
class Steering:
    """The user's requests (each field optional)."""

    chords: str | None = None  # "C G Am F" (a chord a bar) or "C:2 G:2 Am F" (lengths in beats)
    key: str | None = None  # "A minor", "D dorian" ...: notes outside its scale never sound
    scale: tuple[int, ...] | None = None  # pitch classes (0 = C) instead of a key's scale
    chromatic: bool = False  # let short notes outside the scale pass by
    # (melody|accompaniment|bass|all, lowest, highest) as note names
    ranges: tuple[tuple[str, str, str], ...] = ()
    density: str | None = None  # notes per bar, or sparser | as-context | busier

    def __post_init__(self) -> None:
        # Every value checked here, before any work: one line naming the setting.
        if self.key is not None:
            _field("key", scale_of, self.key)
        if self.scale is not None and (not self.scale or any(not 0 <= p < 12 for p in self.scale)):
            raise FieldError("scale", "needs pitch classes between 0 (C) and 11 (B)")
        for part, lo, hi in self.ranges:
            if part not in PARTS and part != BASS:
                names = ", ".join([*PARTS, BASS])
                raise FieldError("ranges", f"{part!r}: the part must be {names}")
            name = range_field(part)
            low, high = _field(name, note_number, lo), _field(name, note_number, hi)
            if not 21 <= low <= high <= 108:
                raise FieldError(name, f"{lo}-{hi} is not a range of piano keys (A0-C8)")
            if part == BASS and high - low < 11:
                # Every chord's bass must have a key in it.
                raise FieldError(name, f"{lo}-{hi} is narrower than an octave")
        self._check_bass_in_range()
        if self.density is not None and self.density not in DENSITY_WORDS:
            value = _field("density", float, self.density)
            if not 0 < value <= 200:
                raise FieldError("density", "must be more than 0 and at most 200 notes a bar")
        if self.chords is not None:
            _field("chords", parse_progression, self.chords, 4.0)
            self._check_chords_in_scale()

    @classmethod
    def parse(
        cls,
        *,
        chords: str | None = None,
        key: str | None = None,
        scale: str | None = None,
        chromatic: bool = False,
        ranges: dict[str, str | None] | None = None,
        density: str | None = None,
    ) -> Steering:
        """The settings as a user types them (the command line's options, the web API's
        fields): `scale` as "C,D,E,G,A", `ranges` as {part: "LOW-HIGH"}."""
        spans = []
        for part, text in (ranges or {}).items():
            if text:
                low, sep, high = text.partition("-")
                if not sep:
                    problem = f"takes LOW-HIGH (e.g. C4-C6), not {text!r}"
                    raise FieldError(range_field(part), problem)
                spans.append((part, low.strip(), high.strip()))
        return cls(
            chords=chords or None,
            key=key or None,
            scale=None if not scale else scale_classes(scale),
            chromatic=chromatic,
            ranges=tuple(spans),
            density=density or None,
        )

    def pitch_classes(self) -> tuple[int, ...] | None:
        """The scale notes must keep to, if any."""
        if self.scale is not None:
            return tuple(sorted(set(self.scale)))
        return scale_of(self.key) if self.key is not None else None

    def _check_bass_in_range(self) -> None:
        bass = self.bass_range()
        for part, lo, hi in self.ranges:
            if bass is not None and part in ("all", "accompaniment"):
                low, high = max(bass[0], note_number(lo)), min(bass[1], note_number(hi))
                if high - low < 11:
                    raise FieldError(
                        "bass_range",
                        f"leaves less than an octave inside the {range_field(part)} {lo}-{hi}",
                    )

    def _check_chords_in_scale(self) -> None:
        scale = self.pitch_classes()
        if scale is None or self.chromatic:
            return
        for bar in parse_progression(self.chords, 4.0):
            for _, chord in bar:
                out = sorted(chord.tones - set(scale))
                if out:
                    names = ", ".join(PITCH_CLASSES[p] for p in out)
                    raise FieldError(
                        "chords",
                        f"{chord.symbol()} has {names}, outside the scale of the key "
                        "(allow chromatic notes, or change one of them)",
                    )

    def as_dict(self) -> dict[str, Any]:
        """The sidecar's record of the requests, as `parse` (and the web API) takes them."""
        out = {k: v for k, v in asdict(self).items() if v not in (None, (), False)}
        if self.scale is not None:
            out["scale"] = ",".join(str(p) for p in self.scale)
        out.pop("ranges", None)
        return out | {range_field(part): f"{lo}-{hi}" for part, lo, hi in self.ranges}

    def bass_range(self) -> tuple[int, int] | None:
        """The lowest and highest note of the bass line, if asked."""
        for part, lo, hi in self.ranges:
            if part == BASS:
                return note_number(lo), note_number(hi)
        return None

    def chord_bars(self, bar_beats: float) -> list[list[tuple[float, Chord]]] | None:
        """The given chords as bars of (beat, chord), for bars of `bar_beats`."""
        return None if self.chords is None else parse_progression(self.chords, bar_beats)

    def constraints(
        self, *, positions_per_beat: int, context_density: float, part: int = -1
    ) -> tuple[list[Constraint], float | None]:
        """The grammar constraints of the requests (chords aside: the copilot places them),
        and the density asked for in notes per bar (None: not asked); with `part` (0 melody,
        1 accompaniment) the density counts that part's notes alone."""
        out: list[Constraint] = []
        scale = self.pitch_classes()
        if scale is not None:
            passing = int(PASSING_BEATS * positions_per_beat) if self.chromatic else 0
            out.append(Scale(scale, passing))
        ranges = {
            PARTS[p]: (note_number(lo), note_number(hi)) for p, lo, hi in self.ranges if p in PARTS
        }
        if ranges:
            out.append(Register(ranges))
        target = None
        if self.density is not None:
            factor = DENSITY_WORDS.get(self.density)
            target = factor * context_density if factor is not None else float(self.density)
            # Every bar within +-15 % (the promise is 20 %: rounding of small counts).
            low, high = int(np.ceil(0.85 * target)), max(int(np.floor(1.15 * target)), 1)
            out.append(Density(low, high, part))
        return out, target


def _field(name: str, parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except ValueError as e:
        raise FieldError(name, str(e)) from None
