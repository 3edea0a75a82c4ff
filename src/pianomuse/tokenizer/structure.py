"""The musical structure of a REMI token stream: token kinds, note groups, bars, headers.

Pure functions over token ids and the vocabulary's strings; no MIDI library is needed here,
so generation and the data pipeline can reason about music without touching MIDI.

The REMI grammar reads, for every bar (version 1, miditok's, has no Chord, Bass or Part):
    Bar TimeSig [Part] (Position [Tempo] [Chord [Bass]] (Pitch Velocity Duration)*)* [Part ...]
A Part opens the block of one part's notes in the bar (positions rise inside a block); a
Position carries at least one of the others; `FOLLOWS` says what may follow what. A note is
the atom Pitch Velocity Duration; a cut may only fall before a Bar, a Part, a Position or a
Pitch, never inside a note. The *header* in force at a point is the last TimeSig, Tempo and
Chord (with its Bass) before it, and the Part of its block: a window cut at bar k is prefixed
with them so that it keeps its metre, tempo and harmony.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class Kind(IntEnum):
    """The type of a token, from its vocabulary string's prefix."""

    SPECIAL = 0
    BAR = 1
    TIMESIG = 2
    POSITION = 3
    TEMPO = 4
    PITCH = 5
    VELOCITY = 6
    DURATION = 7
    OTHER = 8
    CHORD = 9
    BASS = 10
    PART = 11


_PREFIX = {
    "Bar": Kind.BAR,
    "TimeSig": Kind.TIMESIG,
    "Position": Kind.POSITION,
    "Tempo": Kind.TEMPO,
    "Pitch": Kind.PITCH,
    "Velocity": Kind.VELOCITY,
    "Duration": Kind.DURATION,
    "Chord": Kind.CHORD,
    "Bass": Kind.BASS,
    "Part": Kind.PART,
}
# What may follow a token of each kind in a stream (None: the start of a stream).
FOLLOWS: dict[Kind | None, tuple[Kind, ...]] = {
    None: (Kind.BAR,),
    Kind.BAR: (Kind.TIMESIG,),
    Kind.TIMESIG: (Kind.POSITION, Kind.PART, Kind.BAR),
    Kind.PART: (Kind.POSITION,),
    Kind.POSITION: (Kind.TEMPO, Kind.CHORD, Kind.PITCH),
    Kind.TEMPO: (Kind.CHORD, Kind.PITCH, Kind.POSITION, Kind.PART, Kind.BAR),
    Kind.CHORD: (Kind.BASS, Kind.PITCH, Kind.POSITION, Kind.PART, Kind.BAR),
    Kind.BASS: (Kind.PITCH, Kind.POSITION, Kind.PART, Kind.BAR),
    Kind.PITCH: (Kind.VELOCITY,),
    Kind.VELOCITY: (Kind.DURATION,),
    Kind.DURATION: (Kind.PITCH, Kind.POSITION, Kind.PART, Kind.BAR),
}
PARTS = ("Melody", "Accompaniment")  # Part token values 0, 1
_SPECIAL = {"PAD", "BOS", "EOS", "MASK", "FIM"}


@dataclass(frozen=True)
class Header:
    """What is in force at a point of a token stream (token ids, -1 if none)."""

    time_sig: int
    tempo: int
    chord: int = -1
    bass: int = -1  # the Bass right after that Chord
    part: int = -1  # the Part in force in the current bar


class Structure:
    """Token-kind tables for one vocabulary, and the structural queries built on them."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab = list(vocab)
        V = len(self.vocab)
        self.kind = np.full(V, Kind.OTHER, dtype=np.int8)  # (V,)
        # (V,) Pitch and Position number, Part index (`PARTS`), Bass pitch class, else -1
        self.value = np.full(V, -1, dtype=np.int64)
        for i, tok in enumerate(self.vocab):
            prefix, _, val = tok.partition("_")
            if prefix in _SPECIAL:
                self.kind[i] = Kind.SPECIAL
            elif prefix in _PREFIX:
                self.kind[i] = _PREFIX[prefix]
                if prefix in ("Pitch", "Position"):
                    self.value[i] = int(val)
                elif prefix == "Part":
                    self.value[i] = PARTS.index(val)
                elif prefix == "Bass":
                    self.value[i] = PITCH_NAMES.index(val)
                elif prefix == "Chord" and val != "N":
                    self.value[i] = PITCH_NAMES.index(val.split(":")[0])  # the root
        self.id = {tok: i for i, tok in enumerate(self.vocab)}
        # Bar length of each TimeSig token in quarter-note beats (0 elsewhere), and its metre.
        self.metre: dict[int, tuple[int, int]] = {}
        self.bar_beats = np.zeros(V, dtype=np.float64)
        # Length of each Duration token in beats (0 elsewhere): "Duration_1.4.8" = 1 + 4/8.
        self.duration_beats = np.zeros(V, dtype=np.float64)
        for i, tok in enumerate(self.vocab):
            prefix, _, val = tok.partition("_")
            if prefix == "TimeSig":
                num, den = (int(x) for x in val.split("/"))
                self.metre[i] = (num, den)
                self.bar_beats[i] = 4 * num / den
            elif prefix == "Duration":
                beats, pos, res = (int(x) for x in val.split("."))
                self.duration_beats[i] = beats + pos / res
        # Pitch token id of each MIDI pitch (-1 where the vocabulary has none).
        self.pitch_id = np.full(128, -1, dtype=np.int64)
        for i in np.flatnonzero(self.kind == Kind.PITCH):
            self.pitch_id[self.value[i]] = i
        self.position_zero = self.id.get("Position_0", -1)
        self._transposers: dict[int, np.ndarray] = {}

    def transposer(self, semitones: int) -> np.ndarray:
        """(V,) the id each token becomes when the music moves by `semitones`: pitches move,
        chord roots and basses move round the 12 pitch classes, every other token stays.
        A pitch that leaves the vocabulary maps to -1."""
        if semitones in self._transposers:
            return self._transposers[semitones]
        out = np.arange(len(self.vocab), dtype=np.int64)
        for i in np.flatnonzero(self.kind == Kind.PITCH):
            p = self.value[i] + semitones
            out[i] = self.pitch_id[p] if 0 <= p < 128 else -1
        for i in np.flatnonzero((self.kind == Kind.CHORD) & (self.value >= 0)):
            quality = self.vocab[i].split(":", 1)[1]
            out[i] = self.id[f"Chord_{PITCH_NAMES[(self.value[i] + semitones) % 12]}:{quality}"]
        for i in np.flatnonzero(self.kind == Kind.BASS):
            out[i] = self.id[f"Bass_{PITCH_NAMES[(self.value[i] + semitones) % 12]}"]
        self._transposers[semitones] = out
        return out

    # ----- per-token queries -------------------------------------------------------------
    def kinds(self, ids: np.ndarray) -> np.ndarray:
        """Kind of every token; ids (T,) -> (T,) int8."""
        return self.kind[np.asarray(ids)]

    def bar_starts(self, ids: np.ndarray) -> np.ndarray:
        """Indices of the Bar tokens."""
        return np.flatnonzero(self.kinds(ids) == Kind.BAR)

    def blocks(self, bar: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """A bar's head (Bar, TimeSig and anything before its first Part) and its part
        blocks (each from its Part token on)."""
        starts = np.flatnonzero(self.kinds(bar) == Kind.PART)
        if len(starts) == 0:
            return bar, []
        edges = np.append(starts, len(bar))
        return bar[: starts[0]], [bar[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def bar_metres(self, ids: np.ndarray) -> np.ndarray:
        """The TimeSig token id of every bar (the one after its Bar, or the one in force)."""
        ids = np.asarray(ids)
        ts, _ = self.headers(np.append(ids, [self.id["Bar_None"]] * 2))
        return ts[self.bar_starts(ids) + 2]

    def bar_lines(self, ids: np.ndarray) -> np.ndarray:
        """(bars + 1,) start of every bar and the end of the last, in quarter-note beats from
        the first Bar: where the tokens put the bar lines (a bar without a time signature in
        force counts as 4/4)."""
        metres = self.bar_metres(ids)
        lengths = np.where(metres >= 0, self.bar_beats[np.maximum(metres, 0)], 4.0)
        return np.concatenate([[0.0], np.cumsum(lengths)])

    def note_groups(self, ids: np.ndarray) -> np.ndarray:
        """(n, 3) indices of every complete Pitch, Velocity, Duration atom."""
        k = self.kinds(ids)
        p = np.flatnonzero(k[:-2] == Kind.PITCH) if len(k) >= 3 else np.zeros(0, np.int64)
        ok = (k[p + 1] == Kind.VELOCITY) & (k[p + 2] == Kind.DURATION)
        p = p[ok]
        return np.stack([p, p + 1, p + 2], axis=1)

    def safe_cuts(self, ids: np.ndarray) -> np.ndarray:
        """Indices i where a stream may be cut (token i starts a bar, a part, a position or a
        note): a Tempo or a Chord stays with its Position, and a cut never falls inside a note.
        """
        k = self.kinds(ids)
        return np.flatnonzero(
            (k == Kind.BAR) | (k == Kind.PART) | (k == Kind.POSITION) | (k == Kind.PITCH)
        )

    def headers(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Time-signature and tempo token ids in force at every index (before the token).

        Vectorised forward fill: (T,) ids -> two (T,) arrays, -1 where nothing is set yet.
        """
        ids = np.asarray(ids)
        k = self.kinds(ids)
        out = []
        for kind in (Kind.TIMESIG, Kind.TEMPO):
            last = np.where(k == kind, np.arange(len(ids)), -1)
            last = np.maximum.accumulate(np.concatenate([[-1], last[:-1]]))  # strictly before
            out.append(np.where(last >= 0, ids[np.maximum(last, 0)], -1))
        return out[0], out[1]

    def header_at(self, ids: np.ndarray, i: int) -> Header:
        """The header in force just before index i."""
        ids = np.asarray(ids)
        k = self.kinds(ids[:i])

        def last(kind: Kind, after: int = -1) -> int:
            at = np.flatnonzero(k == kind)
            return int(at[-1]) if len(at) and at[-1] > after else -1

        ts, tp, ch = last(Kind.TIMESIG), last(Kind.TEMPO), last(Kind.CHORD)
        bass = ch + 1 if ch >= 0 and ch + 1 < i and k[ch + 1] == Kind.BASS else -1
        part = last(Kind.PART, after=last(Kind.BAR))
        return Header(*(int(ids[j]) if j >= 0 else -1 for j in (ts, tp, ch, bass, part)))

    # ----- cutting windows ---------------------------------------------------------------
    def with_header(self, ids: np.ndarray, start: int, header: Header | None = None) -> np.ndarray:
        """ids[start:] made self-contained: starts with Bar TimeSig, has a Tempo at once and
        the Chord in force.

        `start` must be a safe cut. At a bar start the bar's own Bar/TimeSig are kept and the
        tempo and chord in force are put after a Position_0 (unless the bar sets its own
        there); at a mid-bar cut a new Bar, the time signature, the position in force, the
        tempo, the chord and the part in force are put in front.
        """
        ids = np.asarray(ids)
        h = header or self.header_at(ids, start)
        rest = ids[start:]
        k = self.kinds(rest[:4])
        if len(k) and k[0] == Kind.BAR:
            body = 2 if len(k) > 1 and k[1] == Kind.TIMESIG else 1
            head = list(rest[:body])
            if body == 1 and h.time_sig >= 0:
                head.append(h.time_sig)
            nxt = rest[body:]
            if len(nxt) and self.kind[nxt[0]] == Kind.PART:  # the bar's first block
                head, nxt = head + [nxt[0]], nxt[1:]
            if len(nxt) and nxt[0] == self.position_zero:
                return self._opened(head, nxt[:1], nxt[1:], h, ids.dtype)
            return self._opened(head, [self.position_zero], nxt, h, ids.dtype)
        # Mid-bar cut (only when one bar is longer than a window): re-open a bar (and the
        # part's block) at the position in force, so the notes keep their place in the beat.
        head = [self.id["Bar_None"]] + ([h.time_sig] if h.time_sig >= 0 else [])
        if k[0] == Kind.PART:
            return self._opened(head + [rest[0]], [self.position_zero], rest[1:], h, ids.dtype)
        head += [h.part] if h.part >= 0 else []
        if k[0] == Kind.POSITION:
            return self._opened(head, rest[:1], rest[1:], h, ids.dtype)
        pos = [self._position_before(ids, start)]
        return self._opened(head, pos, rest, h, ids.dtype)

    def _opened(
        self, head: list, position: Sequence[int], tail: np.ndarray, h: Header, dtype: object
    ) -> np.ndarray:
        """head + position + the tempo and chord in force (where `tail` does not set its own
        right there) + tail."""
        k = self.kinds(tail[:2])
        own_tempo = len(k) > 0 and k[0] == Kind.TEMPO
        lead = list(tail[:1]) if own_tempo else ([h.tempo] if h.tempo >= 0 else [])
        tail = tail[1:] if own_tempo else tail
        own_chord = len(tail) > 0 and self.kind[tail[0]] == Kind.CHORD
        chord = [] if own_chord or h.chord < 0 else [h.chord] + ([h.bass] if h.bass >= 0 else [])
        parts = [head, list(position), lead, chord, tail]
        return np.concatenate([np.asarray(x, dtype=np.int64) for x in parts]).astype(dtype)

    def _position_before(self, ids: np.ndarray, i: int) -> int:
        k = self.kinds(ids[:i])
        p = np.flatnonzero(k == Kind.POSITION)
        return int(ids[p[-1]]) if len(p) else self.position_zero

    def last_cut_at_most(self, ids: np.ndarray, end: int) -> int:
        """The largest safe cut <= end (so ids[:cut] ends on a whole note); 0 if none."""
        cuts = self.safe_cuts(ids[: end + 1])
        return int(cuts[-1]) if len(cuts) else 0
