"""Scores: notes in beats engraved as a MusicXML piano grand staff (music21 writes the file)
and drawn as SVG (Verovio).

music21 does what a score needs and a hand-written writer would get wrong: notes that cross
a bar line are split and tied, durations such as 1/3 beat become triplets, overlapping notes
in one staff become voices, and chord symbols are real <harmony> elements. This module is the
only one that imports music21 or Verovio; both are imported when a score is asked for, not
before (music21 takes seconds to import).

Layout: the melody part, where the piece has one, on the upper staff; every other note on the
upper staff from middle C up and on the lower staff below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

SPLIT_PITCH = 60  # middle C: the lowest note of the upper staff, for notes of no melody part
# The coarser grid a score falls back to when the engraver cannot lay out the file's own
# rhythms (a 1/64 triplet): sixteenth notes, no tuplets.
FALLBACK_GRID = 4


@dataclass(frozen=True)
class ScoreNotes:
    """What a score shows. Times are quarter-note beats from the start of the piece."""

    onset: np.ndarray  # (n,) float beats
    duration: np.ndarray  # (n,) float beats
    pitch: np.ndarray  # (n,) MIDI pitches
    melody: np.ndarray  # (n,) bool: the note belongs to the melody part (upper staff)
    metres: list[tuple[float, int, int]]  # (beat, numerator, denominator) of each change
    end: float  # the last bar line, beats
    qpm: float  # tempo at the start
    grid: int  # positions a beat the notes are quantised to (the tokenizer's)
    key: str | None = None  # "C major", "A minor"; None: detected from the notes
    chords: list[tuple[float, str]] = field(default_factory=list)  # (beat, "Am7")
    marks: list[tuple[float, str]] = field(default_factory=list)  # (beat, text) above the staff
    title: str = ""


def musicxml(s: ScoreNotes, rhythm: str = "readable") -> tuple[bytes, list[str]]:
    """The score as MusicXML bytes, and what had to be simplified to lay it out (empty when
    nothing was). `rhythm`: "exact" writes every note on the file's own grid (a played
    performance's 1/24-beat offsets become 24-tuplets); "readable" first moves each beat's
    notes to sixteenths or to eighth-note triplets, whichever they lie closer to."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    simplified: list[str] = []
    if rhythm == "readable":
        s, moved = readable(s)
        if moved:
            simplified.append(f"{moved} of {len(s.onset)} onsets moved to sixteenths or triplets")
    elif rhythm != "exact":
        raise ValueError(f"rhythm is readable or exact, not {rhythm!r}")
    for grid in (s.grid, FALLBACK_GRID):
        try:
            return GeneralObjectExporter(_score(s, grid, simplified)).parse(), simplified
        except Exception as e:  # noqa: BLE001 - any engraving failure: try the coarser grid
            if grid == FALLBACK_GRID:
                raise
            simplified.append(
                f"rhythms quantised to sixteenth notes ({type(e).__name__} at the file's grid)"
            )
    raise AssertionError("unreachable")


# Each beat is read on sixteenths unless its onsets lie this much closer to eighth-note
# triplets: a straight beat played a little unevenly must not turn into triplets.
TRIPLET_PREFERENCE = 0.7
READABLE_GRID = 12  # positions a beat that hold both sixteenths and triplets


def readable(s: ScoreNotes) -> tuple[ScoreNotes, int]:
    """The notes moved beat by beat onto sixteenths (4 a beat) or eighth-note triplets (3 a
    beat), whichever grid the beat's onsets are closer to; each note ends on the grid of the
    beat it ends in and lasts at least one step. Returns the notes and how many onsets moved."""
    beat = np.floor(s.onset + 1e-9).astype(int)
    steps = {}  # beat -> positions a beat of its grid
    for b in np.unique(beat):
        x = s.onset[beat == b] - b
        duple = np.abs(x - np.round(x * 4) / 4).sum()
        triple = np.abs(x - np.round(x * 3) / 3).sum()
        steps[int(b)] = 3 if triple < TRIPLET_PREFERENCE * duple else 4

    def snap(t: np.ndarray) -> np.ndarray:
        n = np.array([steps.get(int(np.floor(v + 1e-9)), 4) for v in t])
        return np.round(t * n) / n, n

    onset, n_on = snap(s.onset)
    end, _ = snap(s.onset + s.duration)
    duration = np.maximum(end - onset, 1.0 / n_on)
    moved = int((~np.isclose(onset, s.onset)).sum())
    out = replace(s, onset=onset, duration=duration, grid=READABLE_GRID)
    return out, moved


def svg(xml: bytes, page_width: int = 2100) -> str:
    """The score drawn by Verovio as one SVG (all systems on one tall page)."""
    import verovio

    # The resource folder named explicitly: Verovio's default lookup finds its fonts only on
    # the thread that first made a toolkit, and a server engraves on worker threads.
    tk = verovio.toolkit(False)
    tk.setResourcePath(str(Path(verovio.__file__).parent / "data"))
    tk.setOptions({"pageWidth": page_width, "adjustPageHeight": True, "breaks": "auto",
                   "scale": 40, "footer": "none", "header": "none"})  # fmt: skip
    if not tk.loadData(xml.decode()):
        raise ValueError(f"Verovio could not read the score: {tk.getLog().strip()[-300:]}")
    # One page per call would cut the piece; a page as tall as the piece holds it whole.
    tk.setOptions({"pageHeight": 60000})
    tk.redoLayout()
    return tk.renderToSVG(1)


def _beats(x: float, grid: int) -> Fraction:
    return Fraction(round(x * grid), grid)


def _score(s: ScoreNotes, grid: int, simplified: list[str]) -> Any:
    from music21 import clef, expressions, instrument, key, layout, meter, stream, tempo

    upper, lower = stream.PartStaff(id="upper"), stream.PartStaff(id="lower")
    upper.insert(0, instrument.Piano())
    for part in (upper, lower):
        for beat, num, den in s.metres:
            part.insert(_beats(beat, grid), meter.TimeSignature(f"{num}/{den}"))
    upper.insert(0, tempo.MetronomeMark(number=round(s.qpm)))
    _place_notes(s, grid, upper, lower)
    end = _beats(s.end, grid)
    for part in (upper, lower):
        part.makeRests(fillGaps=True, inPlace=True, timeRangeFromBarDuration=False)
        if part.highestTime < end:  # the last bar runs to its bar line
            from music21 import note

            part.insert(part.highestTime, note.Rest(quarterLength=end - part.highestTime))
    k = _key(s, upper, lower)
    for part in (upper, lower):
        part.insert(0, key.KeySignature(k.sharps))
    for beat, symbol in s.chords:
        if symbol == "N":  # no chord
            upper.insert(_beats(beat, grid), expressions.TextExpression("N.C."))
            continue
        try:
            upper.insert(_beats(beat, grid), _chord_symbol(symbol))
        except Exception:  # noqa: BLE001 - a symbol music21 cannot read stays as text
            upper.insert(_beats(beat, grid), expressions.TextExpression(symbol))
            simplified.append(f"chord {symbol} written as text")
    for beat, text in s.marks:
        upper.insert(_beats(beat, grid), expressions.RehearsalMark(text))
    score = stream.Score()
    if s.title:
        from music21 import metadata

        score.metadata = metadata.Metadata(title=s.title)
    score.insert(0, upper)
    score.insert(0, lower)
    score.insert(0, layout.StaffGroup([upper, lower], name="Piano", symbol="brace"))
    lower.insert(0, clef.BassClef())
    return score


def _place_notes(s: ScoreNotes, grid: int, upper: Any, lower: Any) -> None:
    """Notes sounding together for the same time in one staff go in as one chord."""
    from music21 import chord, note, tie

    on = np.array([_beats(x, grid) for x in s.onset], dtype=object)
    length = [max(_beats(d, grid), Fraction(1, grid)) for d in s.duration]
    top = s.melody | (s.pitch >= SPLIT_PITCH)
    groups: dict[tuple[bool, Fraction, Fraction], list[int]] = {}
    for i in range(len(on)):
        groups.setdefault((bool(top[i]), on[i], length[i]), []).append(int(s.pitch[i]))
    lines = _bar_lines(s, grid)
    for (is_top, at, dur), pitches in sorted(groups.items(), key=lambda g: (g[0][1], g[0][2])):
        pitches = sorted(set(pitches))
        # Split at the bar lines here, not in music21: its remainders can take four dots.
        cuts = [b for b in lines if at < b < at + dur]
        edges = [at, *cuts, at + dur]
        parts = [p for a, b in zip(edges, edges[1:], strict=False) for p in _readable(b - a)]
        for k, part in enumerate(parts):
            n = note.Note(pitches[0]) if len(pitches) == 1 else chord.Chord(pitches)
            for p in n.pitches:  # a pitch made from its MIDI number carries an explicit
                if p.accidental is not None and p.accidental.alter == 0:  # natural sign
                    p.accidental = None
            n.quarterLength = part
            if len(parts) > 1:
                n.tie = tie.Tie(
                    "start" if k == 0 else "stop" if k == len(parts) - 1 else "continue"
                )
            (upper if is_top else lower).insert(at, n)
            at += part


def _bar_lines(s: ScoreNotes, grid: int) -> list[Fraction]:
    """Every bar line from the metres, up to the end."""
    end, out = _beats(s.end, grid), []
    changes = [(_beats(b, grid), Fraction(4 * num, den)) for b, num, den in s.metres]
    for (at, bar), nxt in zip(changes, [*changes[1:], (end, None)], strict=True):
        while at < min(nxt[0], end):
            out.append(at)
            at += bar
    return out


def _readable(length: Fraction) -> list[Fraction]:
    """A duration as tied values of at most two dots each: music21 would write a 15/8-beat
    note as a triple-dotted quarter, which players stumble over and readers refuse."""
    from music21 import duration

    dots, _ = duration.dottedMatch(length)
    if dots is False or dots <= 2:
        return [length]
    plain = Fraction(2) ** math.floor(math.log2(length))  # the longest undotted value in it
    return [plain, *_readable(length - plain)]


def _key(s: ScoreNotes, *parts: Any) -> Any:
    """The key asked for, else the one the notes suggest (Krumhansl-Schmuckler)."""
    from music21 import key, stream

    if s.key:
        tonic, _, mode = s.key.partition(" ")
        return key.Key(tonic.replace("b", "-"), mode or "major")
    both = stream.Score([p.flatten().notes.stream() for p in parts])
    return both.analyze("key") if len(both.flatten().notes) else key.Key("C")


def _chord_symbol(symbol: str) -> Any:
    """A <harmony> element's chord. music21 names a seventh-suspended-fourth chord with a kind
    MusicXML does not have; MusicXML spells it as a suspended fourth with an added minor
    seventh."""
    from music21 import harmony

    cs = harmony.ChordSymbol(_figure(symbol))
    if cs.chordKind == "suspended-fourth-seventh":
        cs = harmony.ChordSymbol(_figure(symbol).replace("7sus4", "sus4", 1))
        cs.addChordStepModification(harmony.ChordStepModification("add", 7, -1))
    return cs


def _figure(symbol: str) -> str:
    """A lead-sheet symbol ('Bbm7', 'E/G#') as music21 spells it ('B-m7', 'E/G#')."""
    root, _, bass = symbol.partition("/")
    spell = lambda s: s[0] + s[1:].replace("b", "-", 1) if len(s) > 1 and s[1] == "b" else s  # noqa: E731
    return spell(root) + ("/" + spell(bass) if bass else "")
