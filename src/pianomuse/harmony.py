"""Chords: a compact vocabulary, Harte labels (POP909's annotations), and a recogniser.

Pure functions over note arrays (onset and duration in beats, pitch): no MIDI library here.

Vocabulary: a root (12 pitch classes, sharps) and one of the qualities below, or N (no
chord); an inverted chord also names its bass pitch class. POP909's labels map onto it
(`parse_harte`): every quality it uses has an entry except the rare minmaj7, read as min, and
extensions such as 9ths, read as their triad or seventh.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np

from pianomuse.limits import MIN_CHORD_BEATS

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E"}
_SHARPS = {"E#": "F", "B#": "C"}

# Quality -> intervals above the root (semitones). Order matters only for ties.
QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "min7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),
    "7sus4": (0, 5, 7, 10),
    "6": (0, 4, 7, 9),
    "min6": (0, 3, 7, 9),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "hdim7": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
}
# Harte shorthands (and the odd spellings in POP909) -> a quality above.
_HARTE = {
    "maj": "maj",
    "min": "min",
    "7": "7",
    "min7": "min7",
    "maj7": "maj7",
    "sus4": "sus4",
    "sus2": "sus2",
    "sus4(b7)": "7sus4",
    "7sus4": "7sus4",
    "maj6": "6",
    "6": "6",
    "min6": "min6",
    "dim": "dim",
    "aug": "aug",
    "hdim7": "hdim7",
    "dim7": "dim7",
    "minmaj7": "min",
    "9": "7",
    "maj9": "maj7",
    "min9": "min7",
    "5": "maj",
    "1": "maj",
}
# Harte degrees of a bass note ("/3", "/b7" ...) -> semitones above the root.
_DEGREES = {"1": 0, "b2": 1, "2": 2, "b3": 3, "3": 4, "4": 5, "#4": 6, "b5": 6, "5": 7}
_DEGREES |= {"#5": 8, "b6": 8, "6": 9, "bb7": 9, "b7": 10, "7": 11}


@dataclass(frozen=True)
class Chord:
    """A chord symbol: root and bass are pitch classes (0 = C); None root means no chord."""

    root: int | None
    quality: str = "maj"
    bass: int | None = None  # the bass when it is not the root (an inversion)

    @property
    def tones(self) -> frozenset[int]:
        """Pitch classes of the chord (with its bass)."""
        if self.root is None:
            return frozenset()
        t = {(self.root + i) % 12 for i in QUALITIES[self.quality]}
        return frozenset(t | ({self.bass} if self.bass is not None else set()))

    @property
    def lowest(self) -> int | None:
        """The pitch class a bass line plays under this chord."""
        return self.root if self.bass is None else self.bass

    def symbol(self) -> str:
        """The lead-sheet symbol: 'C', 'Am7', 'Bm7b5', 'C/E', 'N' (`parse_symbol` reads it)."""
        if self.root is None:
            return "N"
        s = PITCH_CLASSES[self.root] + _SYMBOL[self.quality]
        return s if self.bass is None else f"{s}/{PITCH_CLASSES[self.bass]}"

    def label(self) -> str:
        """'C#:min7', 'C:maj/E', 'N'."""
        if self.root is None:
            return "N"
        s = f"{PITCH_CLASSES[self.root]}:{self.quality}"
        return s if self.bass is None else f"{s}/{PITCH_CLASSES[self.bass]}"


NO_CHORD = Chord(None)


def pitch_class(name: str) -> int:
    """'C' -> 0, 'Gb' -> 6, 'F#' -> 6."""
    name = _SHARPS.get(name, _FLATS.get(name, name))
    if name not in PITCH_CLASSES:
        raise ValueError(f"not a pitch class: {name!r}")
    return PITCH_CLASSES.index(name)


def note_number(name: str) -> int:
    """'C4' -> 60, 'F#2' -> 42, 'Bb5' -> 82; a plain number is taken as it is."""
    if name.strip().isdigit():
        return int(name)
    m = re.fullmatch(r"([A-Ga-g][#b]?)(-?\d)", name.strip())
    if m is None:
        raise ValueError(f"{name!r} is not a note (for example C4, F#2, Bb5)")
    return 12 * (int(m[2]) + 1) + pitch_class(m[1][0].upper() + m[1][1:])


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


def parse_harte(label: str) -> Chord:
    """A Harte label ('B:maj', 'A:min7/b7', 'G:sus4(b7)', 'N') as a `Chord`."""
    label = label.strip()
    if label in ("N", "X", ""):
        return NO_CHORD
    root_s, _, rest = label.partition(":")
    root = pitch_class(root_s)
    shorthand, _, bass_s = (rest or "maj").partition("/")
    quality = _HARTE.get(shorthand)
    if quality is None:  # e.g. "maj(9)": its triad
        base = shorthand.split("(")[0]
        quality = _HARTE.get(base, "min" if base.startswith("min") else "maj")
    bass = None
    if bass_s:
        if bass_s not in _DEGREES:
            raise ValueError(f"unknown bass degree in {label!r}")
        bass = (root + _DEGREES[bass_s]) % 12
        bass = None if bass == root else bass
    return Chord(root, quality, bass)


def parse_label(label: str) -> Chord:
    """The inverse of `Chord.label`."""
    if label == "N":
        return NO_CHORD
    body, _, bass = label.partition("/")
    root, _, quality = body.partition(":")
    if quality not in QUALITIES:
        raise ValueError(f"unknown chord quality in {label!r}")
    return Chord(pitch_class(root), quality, pitch_class(bass) if bass else None)


def read_chord_file(path: str | os.PathLike) -> list[tuple[float, float, Chord]]:
    """POP909's `chord_midi.txt`: `start end label` a line, times in seconds."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                out.append((float(parts[0]), float(parts[1]), parse_harte(parts[2])))
    return out


# ----- recognising chords from notes ---------------------------------------------------------

_TEMPLATES = [(r, q) for q in QUALITIES for r in range(12)]
# Simpler chords win close calls: a sixth or a seventh must earn its extra tone, since an
# accompaniment's passing and melody notes look like one.
_PRIOR = {"maj": 0.3, "min": 0.3, "sus2": 0.12, "sus4": 0.12}


def _segment_profile(
    notes: dict[str, np.ndarray], start: float, end: float
) -> tuple[np.ndarray, int | None]:
    """Duration (beats) of each pitch class sounding in [start, end), and the pitch class of
    the lowest note sounding there longest."""
    on, off = notes["onset"], notes["onset"] + notes["duration"]
    overlap = np.clip(np.minimum(off, end) - np.maximum(on, start), 0, None)
    sel = overlap > 0
    pc = np.zeros(12)
    if not sel.any():
        return pc, None
    np.add.at(pc, notes["pitch"][sel] % 12, overlap[sel])
    pitches = notes["pitch"][sel]
    low = pitches <= pitches.min() + 4  # the bass register of this span
    w = np.zeros(12)
    np.add.at(w, pitches[low] % 12, overlap[sel][low])
    return pc, int(np.argmax(w))


def best_chord(pc: np.ndarray, bass: int | None) -> Chord:
    """The chord whose tones hold most of the profile `pc` (12 durations), bass included."""
    total = pc.sum()
    if total <= 0:
        return NO_CHORD
    p = pc / total
    best, best_score = NO_CHORD, -np.inf
    for root, quality in _TEMPLATES:
        tones = [(root + i) % 12 for i in QUALITIES[quality]]
        inside = p[tones].sum()
        # Every tone should sound: a missing one costs, more for the root and the third.
        missing = sum(0.12 for t in tones if p[t] < 0.03)
        score = inside - (1 - inside) - missing + _PRIOR.get(quality, 0.0)
        if bass is not None and bass == root:
            score += 0.15
        if score > best_score:
            best, best_score = Chord(root, quality), score
    if bass is not None and best.root is not None and bass != best.root and bass in best.tones:
        best = Chord(best.root, best.quality, bass)
    return best


def recognise(
    notes: dict[str, np.ndarray], bar_lines: np.ndarray, per_bar: int = 2
) -> list[tuple[float, Chord]]:
    """Chord changes (beat, chord) of a piece, recognised from its notes in `per_bar` equal
    spans of every bar (`bar_lines`: bar starts and the end of the last, in beats). A span
    over the same bass that fits the previous chord as well as its own best makes no
    change."""
    changes: list[tuple[float, Chord]] = []
    current = None
    for a, b in zip(bar_lines[:-1], bar_lines[1:], strict=True):
        for k in range(per_bar):
            s, e = a + (b - a) * k / per_bar, a + (b - a) * (k + 1) / per_bar
            pc, bass = _segment_profile(notes, s, e)
            if pc.sum() == 0:
                continue  # silence does not change the harmony
            chord = best_chord(pc, bass)
            if current is not None and chord != current:
                # The same bass and (nearly) as good a fit: the harmony has not moved.
                same_bass = current.lowest == chord.lowest
                keep = same_bass and _fit(pc, current) >= _fit(pc, chord) - 0.05
                chord = current if keep else chord
            if chord != current:
                changes.append((float(s), chord))
                current = chord
    return changes


def _fit(pc: np.ndarray, chord: Chord) -> float:
    """Share of the profile on the chord's tones."""
    total = pc.sum()
    if total <= 0 or chord.root is None:
        return 0.0
    return float(pc[list(chord.tones)].sum() / total)


# ----- chord symbols as people write them ----------------------------------------------------

# Suffix -> quality, longest first when matching.
_SUFFIXES = {
    "": "maj", "maj": "maj", "M": "maj", "5": "maj", "add9": "maj", "m": "min", "min": "min",
    "-": "min", "madd9": "min", "7": "7", "9": "7", "13": "7", "maj7": "maj7", "M7": "maj7",
    "Δ": "maj7", "Δ7": "maj7", "maj9": "maj7", "m7": "min7", "min7": "min7", "-7": "min7",
    "m9": "min7", "dim": "dim", "°": "dim", "o": "dim", "dim7": "dim7", "°7": "dim7",
    "o7": "dim7", "m7b5": "hdim7", "ø": "hdim7", "ø7": "hdim7", "hdim7": "hdim7", "aug": "aug",
    "+": "aug", "sus2": "sus2", "sus4": "sus4", "sus": "sus4", "7sus4": "7sus4", "7sus": "7sus4",
    "6": "6", "maj6": "6", "m6": "min6", "min6": "min6", "mmaj7": "min", "m(maj7)": "min",
}  # fmt: skip
EXAMPLES = "C, Am, G7, Fmaj7, Dm7, Bdim, Bm7b5, Caug, Dsus4, C6, C/E, N"
_SYMBOL = {
    "maj": "", "min": "m", "7": "7", "min7": "m7", "maj7": "maj7", "sus4": "sus4",
    "sus2": "sus2", "7sus4": "7sus4", "6": "6", "min6": "m6", "dim": "dim", "aug": "aug",
    "hdim7": "m7b5", "dim7": "dim7",
}  # fmt: skip


def parse_symbol(symbol: str) -> Chord:
    """A chord symbol as lead sheets write it ('C', 'F#m7', 'Bbmaj7', 'Dsus4', 'C/E', 'N')."""
    s = symbol.strip()
    if s.upper() in ("N", "NC", "N.C."):
        return NO_CHORD
    body, _, bass = s.partition("/")
    root_len = 2 if len(body) > 1 and body[1] in "#b" else 1
    try:
        root = pitch_class(body[0].upper() + body[1:root_len])
        quality = _SUFFIXES[body[root_len:]]
        low = pitch_class(bass[0].upper() + bass[1:]) if bass else None
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"{symbol!r} is not a chord symbol (for example {EXAMPLES})") from None
    return Chord(root, quality, None if low == root else low)


def parse_progression(text: str, bar_beats: float) -> list[list[tuple[float, Chord]]]:
    """Bars of (beat in the bar, chord) from "C G Am F" (a chord a bar) or "C:2 G:2 Am F"
    (lengths in beats, a bar by default); "|" may separate bars. A chord that crosses a bar
    line is stated again at the start of the next bar."""
    items = [t for t in text.replace("|", " ").split() if t]
    if not items:
        raise ValueError("no chords given")
    bars: list[list[tuple[float, Chord]]] = []
    at = 0.0
    for item in items:
        symbol, _, length_s = item.partition(":")
        try:
            length = float(length_s) if length_s else bar_beats
        except ValueError:
            raise ValueError(f"{item!r}: the length after ':' must be a number of beats") from None
        if not MIN_CHORD_BEATS <= length <= 64 or math.isnan(length):
            raise ValueError(
                f"{item!r}: a chord lasts at least {MIN_CHORD_BEATS:g} and at most 64 beats"
            )
        chord = parse_symbol(symbol)
        end = at + length
        while at < end - 1e-9:
            bar, beat = int(at // bar_beats), at % bar_beats
            while len(bars) <= bar:
                bars.append([])
            bars[bar].append((round(beat, 6), chord))
            at = min(end, (bar + 1) * bar_beats)
    return bars
