"""Version 2 of the tokenizer: the harmony and the parts of a piece in the stream, on a grid
that holds triplets. Bar by bar:

    Bar TimeSig [Part] (Position [Tempo] [Chord [Bass]] (Pitch Velocity Duration)*)* [Part ...]

- Parts: a piece whose tracks name a melody (MELODY, BRIDGE, lead, vocal ...) has two parts,
  and each bar holds a block per part present, Melody first, each opened by its Part token
  and read with its own rising positions: a bar's whole melody comes before its
  accompaniment, so the accompaniment can be written to a given melody. A plain piano file
  has one part and no Part token at all: an absent part costs nothing. Notes of different
  parts on one key at one time both stay (a key is struck once per part and position).
- Chords: where the harmony changes, a Chord token (root and quality, `pianomuse.harmony`)
  and, for an inversion, a Bass token (its pitch class), at their position in the bar's first
  block, as the tempo. From the piece's chord markers (the annotations that beat alignment
  carries) when it has them, else from the recogniser.
- The grid: 24 steps per beat, which holds 32nd notes and triplets alike; it keeps notes,
  velocities and triplet onsets better than the union of the 32nd and triplet grids, for
  barely more tokens.

Why not miditok (which version 1 wraps): its chord tokens mark notes struck together, not a
harmony taken from annotations; its programs would cost a token before every note and merge
the two tracks of one part (a unison lost); per-bar part blocks are not one of its layouts.
This module is the encoder and decoder it would have been; `Structure` reads the result like
any REMI stream.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from symusic import Note, Score, Tempo, TextMeta, TimeSignature, Track

from pianomuse.harmony import NO_CHORD, PITCH_CLASSES, QUALITIES, Chord, parse_label, recognise
from pianomuse.tokenizer.align import CHORD_MARKER
from pianomuse.tokenizer.base import FIM_TOKENS, Tokenizer, check_settings
from pianomuse.tokenizer.metre import bar_beats
from pianomuse.tokenizer.midi_io import MidiInputError, MidiSource, load_score, source_name
from pianomuse.tokenizer.structure import FOLLOWS, PARTS, Kind, Structure
from pianomuse.tokenizer.timing import bar_ticks, bar_timing

METRES = [(1, 4), (2, 4), (3, 4), (4, 4), (5, 4), (6, 4), (3, 8), (6, 8), (12, 8)]
MELODY_NAMES = ("melody", "bridge", "lead", "vocal", "voice", "tune")
TRACK_OF_PART = {0: "Melody", 1: "Accompaniment", -1: "Piano"}
DECODE_TPQ = 480  # ticks per quarter of decoded scores: 20 per grid step


@dataclass(frozen=True)
class TokenizerSettingsV2:
    """Everything that determines version 2's vocabulary and encoding."""

    pitch_low: int = 21  # lowest piano key (A0)
    pitch_high: int = 108  # highest piano key (C8)
    grid: tuple[int, ...] = (24,)  # subdivisions of a beat (their union): onsets snap to it
    max_duration_beats: int = 12  # longest note, in beats
    long_per_beat: int = 4  # duration steps per beat beyond 4 beats
    num_velocities: int = 32  # velocity bins over 1..127
    num_tempos: int = 32  # tempo bins, log-spaced
    tempo_low: int = 40  # slowest tempo token, quarter notes per minute
    tempo_high: int = 250  # fastest tempo token
    chords: bool = True  # Chord and Bass tokens
    parts: bool = True  # Part tokens
    special_tokens: tuple[str, ...] = field(default=("PAD", "BOS", "EOS", *FIM_TOKENS))

    def __post_init__(self) -> None:
        check_settings(self)
        if not self.grid or any(g < 1 or 48 % g for g in self.grid):
            raise ValueError("grid subdivisions must divide 48")
        if self.max_duration_beats < 4 or self.long_per_beat < 1:
            raise ValueError("max_duration_beats must be at least 4, long_per_beat positive")

    @property
    def positions_per_beat(self) -> int:
        """Grid steps per beat in Position and Duration tokens (the grids' common multiple)."""
        return math.lcm(*self.grid)

    def lattice(self) -> np.ndarray:
        """The steps of one beat (0 .. ppb-1) that lie on one of the grids."""
        ppb = self.positions_per_beat
        return np.array([s for s in range(ppb) if any(s * g % ppb == 0 for g in self.grid)])


class PianoTokenizerV2(Tokenizer):
    """Version 2: chords, parts and a grid that holds triplets (see the module docstring)."""

    version = 2
    has_chords = True
    has_parts = True

    def __init__(self, settings: TokenizerSettingsV2 | None = None):
        self.settings = s = settings or TokenizerSettingsV2()
        ppb = s.positions_per_beat
        lattice = s.lattice()
        max_bar = max(bar_beats(m) for m in METRES)
        self.positions = np.array([b * ppb + x for b in range(int(max_bar)) for x in lattice])
        short = [b * ppb + x for b in range(4) for x in lattice if b * ppb + x > 0] + [4 * ppb]
        step = ppb // math.gcd(ppb, s.long_per_beat)  # grid steps per long-duration step
        long = list(range(4 * ppb + step, s.max_duration_beats * ppb + 1, step))
        self.durations = np.array(short + long)  # in grid steps
        self.velocities = np.linspace(0, 127, s.num_velocities + 1, dtype=np.intc)[1:]
        self.tempos = np.geomspace(s.tempo_low, s.tempo_high, s.num_tempos)
        vocab = [f"{t}_None" if "_" not in t else t for t in s.special_tokens]
        vocab += ["Bar_None"] + [f"TimeSig_{n}/{d}" for n, d in METRES]
        vocab += [f"Position_{p}" for p in self.positions]
        vocab += [f"Tempo_{t:.2f}" for t in self.tempos]
        if s.chords:
            vocab += ["Chord_N"] + [
                f"Chord_{PITCH_CLASSES[r]}:{q}" for q in QUALITIES for r in range(12)
            ]
            vocab += [f"Bass_{pc}" for pc in PITCH_CLASSES]
        if s.parts:
            vocab += [f"Part_{p}" for p in PARTS]
        vocab += [f"Pitch_{p}" for p in range(s.pitch_low, s.pitch_high + 1)]
        vocab += [f"Velocity_{v}" for v in self.velocities]
        vocab += [f"Duration_{d // ppb}.{d % ppb}.{ppb}" for d in self.durations]
        self.vocab = vocab
        self.structure = Structure(vocab)

    @property
    def velocity_bins(self) -> list[int]:
        """The MIDI velocities the velocity tokens stand for."""
        return [int(v) for v in self.velocities]

    def _config(self) -> dict:
        return {"settings": asdict(self.settings), "vocab": self.vocab}

    @classmethod
    def _from_config(cls, cfg: dict) -> PianoTokenizerV2:
        settings = dict(cfg["settings"])
        for key in ("special_tokens", "grid"):
            settings[key] = tuple(settings[key])
        return cls(TokenizerSettingsV2(**settings))

    # ----- MIDI -> the piece as the tokens read it ---------------------------------------
    def piano_score(
        self, src: MidiSource, name: str | None = None, as_part: int | None = None
    ) -> Score:
        """Any MIDI source as the model reads it: its parts (a Melody and an Accompaniment
        track, or one Piano track; a file without parts read `as_part`, 0 or 1, if given),
        its chord markers, and the bars and tempo of `bar_timing`."""
        name = name or source_name(src)
        score = load_score(src)
        tracks = [t for t in score.tracks if not t.is_drum and len(t.notes)]
        if not tracks:
            drums = any(t.is_drum and len(t.notes) for t in score.tracks)
            what = "contains only drum tracks, no piano notes" if drums else "contains no notes"
            raise MidiInputError(f"{name}: {what}")
        out = Score(score.tpq, ttype=score.ttype)
        # One track per source track, named by its part: the encoder keeps a key struck by
        # two tracks of one part at once (POP909's MELODY and BRIDGE in unison) twice.
        parts = self._parts([t.name for t in tracks])
        if as_part is not None and all(p < 0 for p in parts):
            parts = [as_part] * len(parts)
        for t, part in zip(tracks, parts, strict=True):
            kept = Track(name=TRACK_OF_PART[part], program=0, ttype=score.ttype)
            kept.notes = t.notes.copy()
            out.tracks.append(kept)
        out.tempos = score.tempos.copy()
        out.time_signatures = score.time_signatures.copy()
        out.markers = score.markers.filter(lambda m: m.text.startswith(CHORD_MARKER))
        return bar_timing(out, self.metres, name)

    # ----- encoding ----------------------------------------------------------------------
    def _encode(self, score: Score) -> np.ndarray:
        s, st = self.settings, self.structure
        ppb, tpq = s.positions_per_beat, score.tpq
        notes = self._notes(score)  # quantised: onset and duration in grid steps
        if len(notes["pitch"]) == 0:
            raise MidiInputError("no notes left inside the piano range")
        lines = np.round(bar_ticks(score) / tpq * ppb).astype(np.int64)  # bar starts, steps
        last = int(notes["onset"].max())
        metres = _metres_at(score, lines, tpq, ppb)
        n_bars = int(np.searchsorted(lines, last, side="right"))
        lines, metres = lines[:n_bars], metres[:n_bars]
        chords = self._chords(score, notes, lines, metres) if s.chords else []
        tempos = [(int(round(t.time / tpq * ppb)), float(t.qpm)) for t in score.tempos]
        ids: list[int] = []
        chord_i = tempo_i = 0
        tempo_last = -1
        for b, start in enumerate(lines):
            end = lines[b + 1] if b + 1 < n_bars else start + int(bar_beats(metres[b]) * ppb)
            ids += [st.id["Bar_None"], st.id[f"TimeSig_{metres[b][0]}/{metres[b][1]}"]]
            # The bar's tempo and chord changes, by position; they go in its first block.
            marks: dict[int, list[int]] = {}
            while tempo_i < len(tempos) and tempos[tempo_i][0] < end:
                tok = self._tempo_id(tempos[tempo_i][1])
                if tok != tempo_last:
                    marks.setdefault(max(tempos[tempo_i][0], start) - start, []).append(tok)
                    tempo_last = tok
                tempo_i += 1
            while chord_i < len(chords) and chords[chord_i][0] < end:
                at = max(chords[chord_i][0], start) - start
                marks.setdefault(at, []).extend(self.chord_ids(chords[chord_i][1]))
                chord_i += 1
            sel = np.flatnonzero((notes["onset"] >= start) & (notes["onset"] < end))
            parts = sorted({int(notes["part"][j]) for j in sel}) or [-1]
            for part in parts:
                mine = [j for j in sel if notes["part"][j] == part]
                if part >= 0:
                    ids.append(st.id[f"Part_{PARTS[part]}"])
                by_pos: dict[int, list] = {at: [] for at in marks}
                for j in mine:
                    by_pos.setdefault(int(notes["onset"][j] - start), []).append(j)
                for at in sorted(by_pos):
                    ids.append(st.id[f"Position_{at}"])
                    ids += marks.get(at, [])
                    for j in sorted(by_pos[at], key=lambda j: notes["pitch"][j]):
                        ids += [
                            st.pitch_id[notes["pitch"][j]],
                            st.id[f"Velocity_{notes['velocity'][j]}"],
                            self._duration_id(int(notes["duration"][j])),
                        ]
                marks = {}  # tempo and chords once, in the first block
        return np.asarray(ids, dtype=np.int64)

    def _notes(self, score: Score) -> dict[str, np.ndarray]:
        """All notes with their part, onsets on the grid's lattice, durations on the duration
        steps, velocities on their bins; one note per (onset, key, source track): the
        longest."""
        s, ppb = self.settings, self.settings.positions_per_beat
        cols: list[dict[str, np.ndarray]] = []
        for i, track in enumerate(score.tracks):
            n = track.notes.numpy()
            part = {v: k for k, v in TRACK_OF_PART.items()}.get(track.name, -1)
            keep = (n["pitch"] >= s.pitch_low) & (n["pitch"] <= s.pitch_high)
            cols.append(
                {k: v[keep] for k, v in n.items()}
                | {"part": np.full(keep.sum(), part), "track": np.full(keep.sum(), i)}
            )
        n = {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}
        beats = n["time"] / score.tpq
        onset = _snap(beats * ppb, s.lattice(), ppb)
        dur_steps = n["duration"] / score.tpq * ppb
        di = np.abs(self.durations[None, :] - dur_steps[:, None]).argmin(axis=1)
        vi = np.abs(self.velocities[None, :].astype(int) - n["velocity"][:, None]).argmin(axis=1)
        out = {
            "onset": onset,
            "duration": self.durations[di],
            "pitch": n["pitch"].astype(np.int64),
            "velocity": self.velocities[vi].astype(np.int64),
            "part": n["part"].astype(np.int64),
            "track": n["track"].astype(np.int64),
        }
        order = np.lexsort(
            (-out["duration"], out["track"], out["pitch"], out["part"], out["onset"])
        )
        out = {k: v[order] for k, v in out.items()}
        key = np.stack([out["onset"], out["part"], out["pitch"], out["track"]], axis=1)
        first = np.ones(len(key), dtype=bool)
        first[1:] = np.any(key[1:] != key[:-1], axis=1)
        return {k: v[first] for k, v in out.items()}

    def _chords(
        self, score: Score, notes: dict[str, np.ndarray], lines: np.ndarray, metres: list
    ) -> list[tuple[int, Chord]]:
        """(grid step, chord) changes: the score's chord markers, else recognised."""
        ppb, tpq = self.settings.positions_per_beat, score.tpq
        marked = [
            (m.time / tpq, parse_label(m.text.removeprefix(CHORD_MARKER)))
            for m in score.markers
            if m.text.startswith(CHORD_MARKER)
        ]
        if not marked:
            beats = {
                "onset": notes["onset"] / ppb,
                "duration": notes["duration"] / ppb,
                "pitch": notes["pitch"],
            }
            end = lines[-1] + bar_beats(metres[-1]) * ppb
            marked = recognise(beats, np.append(lines, end) / ppb)
        out: list[tuple[int, Chord]] = []
        for beat, chord in marked:
            step = int(_snap(np.array([beat * ppb]), self.settings.lattice(), ppb)[0])
            if out and out[-1][0] == step:
                out.pop()  # two changes on one step: the later holds
            if not out or out[-1][1] != chord:
                out.append((step, chord))
        return out[1:] if out and out[0][1] == NO_CHORD else out  # "no chord yet" is implied

    def chord_ids(self, chord: Chord) -> list[int]:
        """The Chord token (and Bass token, for an inversion) of a chord."""
        st = self.structure
        if chord.root is None:
            return [st.id["Chord_N"]]
        ids = [st.id[f"Chord_{PITCH_CLASSES[chord.root]}:{chord.quality}"]]
        return ids + (
            [st.id[f"Bass_{PITCH_CLASSES[chord.bass]}"]] if chord.bass is not None else []
        )

    def _tempo_id(self, qpm: float) -> int:
        i = int(np.abs(np.log(self.tempos) - math.log(max(qpm, 1e-3))).argmin())
        return self.structure.id[f"Tempo_{self.tempos[i]:.2f}"]

    def _duration_id(self, steps: int) -> int:
        ppb = self.settings.positions_per_beat
        return self.structure.id[f"Duration_{steps // ppb}.{steps % ppb}.{ppb}"]

    def track_parts(self, score: Score) -> list[int]:
        """The part of each track of `score` as this tokenizer reads it: 0 melody, 1
        accompaniment, -1 none (a piece without a melody track has no parts)."""
        labels = iter(self._parts([t.name for t in score.tracks if not t.is_drum]))
        return [-1 if t.is_drum else next(labels) for t in score.tracks]

    def _parts(self, names: list[str]) -> list[int]:
        melodic = [any(w in n.lower() for w in MELODY_NAMES) for n in names]
        labelled = self.settings.parts and any(melodic) and not all(melodic)
        return [(0 if m else 1) if labelled else -1 for m in melodic]

    def plain(self, ids: np.ndarray) -> np.ndarray:
        """The same music as a user's plain piano file reads: parts merged into one piano part
        and the chords the recogniser hears instead of the annotated ones. `ids` must start
        with a bar and its header (a window does)."""
        score = self.decode(ids)
        piano = Track(name=TRACK_OF_PART[-1], program=0)
        for t in score.tracks:
            piano.notes.extend(t.notes)
        piano.notes.sort()
        score.tracks = [piano]
        score.markers = []
        return self._encode(score)

    # ----- decoding ----------------------------------------------------------------------
    def decode(self, ids: np.ndarray | list[int]) -> Score:
        """A Score of token ids: a Melody and an Accompaniment track (or one Piano track),
        tempos, time signatures and chord markers. Malformed tokens are skipped."""
        st, ppb = self.structure, self.settings.positions_per_beat
        step = DECODE_TPQ // ppb
        out = Score(DECODE_TPQ)
        notes: dict[int, list[tuple[int, int, int, int]]] = {}
        bar_start, bar_len, onset, part = -1, 0, 0, -1
        pitch = velocity = None
        chord: tuple[int, Chord] | None = None
        kinds = st.kind.tolist()  # Python ints: numpy's compare slowly with `Kind`
        for tok in (int(i) for i in ids):
            kind, text = kinds[tok], self.vocab[tok]
            value = text.partition("_")[2]
            if kind == Kind.BAR:
                bar_start = 0 if bar_start < 0 else bar_start + bar_len
                onset, part = bar_start, -1
            elif kind == Kind.TIMESIG:
                metre = st.metre[tok]
                bar_len = int(bar_beats(metre) * ppb)
                if (
                    not out.time_signatures
                    or (
                        out.time_signatures[-1].numerator,
                        out.time_signatures[-1].denominator,
                    )
                    != metre
                ):
                    out.time_signatures.append(TimeSignature(bar_start * step, *metre))
            elif kind == Kind.POSITION:
                onset = max(bar_start, 0) + int(st.value[tok])
            elif kind == Kind.TEMPO:
                out.tempos.append(Tempo(onset * step, float(value)))
            elif kind == Kind.CHORD:
                chord = (onset, parse_label(value))
                out.markers.append(TextMeta(onset * step, CHORD_MARKER + chord[1].label()))
            elif kind == Kind.BASS and chord is not None and chord[1].root is not None:
                c = Chord(chord[1].root, chord[1].quality, int(st.value[tok]))
                c = c if c.bass != c.root else Chord(c.root, c.quality)
                out.markers[-1] = TextMeta(chord[0] * step, CHORD_MARKER + c.label())
            elif kind == Kind.PART:
                part = int(st.value[tok])
                onset = max(bar_start, 0)
            elif kind == Kind.PITCH:
                pitch = int(st.value[tok])
            elif kind == Kind.VELOCITY and pitch is not None:
                velocity = int(value)
            elif kind == Kind.DURATION and pitch is not None and velocity is not None:
                steps = int(round(st.duration_beats[tok] * ppb))
                notes.setdefault(part, []).append((onset * step, steps * step, pitch, velocity))
                pitch = velocity = None
        for p in sorted(notes, key=lambda p: (p < 0, p)):
            track = Track(name=TRACK_OF_PART[p], program=0)
            for t, d, pi, v in notes[p]:
                track.notes.append(Note(t, d, pi, v))
            track.notes.sort()
            out.tracks.append(track)
        return out

    def tokens_errors(self, ids: np.ndarray | list[int]) -> float:
        """Share of tokens that break the grammar (0.0 = a valid stream): what follows what
        (`FOLLOWS`), one block per part and bar (the data puts Melody first; a part-infilling
        sample puts the given part first), positions rising inside a block, pitches not
        falling at a position (a key twice: two tracks of the part in unison)."""
        st = self.structure
        ids = [int(i) for i in ids if st.kind[int(i)] != Kind.SPECIAL]
        errors, last, pos, bar_len = 0, None, -1, 0
        struck: set[int] = set()
        parts: set[int] = set()  # the bar's blocks so far
        for tok in ids:
            kind = Kind(int(st.kind[tok]))
            value = int(st.value[tok])
            bad = kind not in FOLLOWS[last]
            bad |= kind == Kind.POSITION and not pos < value < bar_len
            bad |= kind == Kind.PART and value in parts  # one block per part and bar
            bad |= kind == Kind.PITCH and bool(struck) and value < max(struck)
            if bad:
                errors += 1
                continue
            if kind == Kind.BAR:
                pos, struck, parts = -1, set(), set()
            elif kind == Kind.TIMESIG:
                bar_len = int(st.bar_beats[tok] * self.settings.positions_per_beat)
            elif kind == Kind.PART:
                pos, struck = -1, set()
                parts.add(value)
            elif kind == Kind.POSITION:
                pos, struck = value, set()
            elif kind == Kind.PITCH:
                struck.add(value)
            last = kind
        return errors / max(len(ids), 1)


def _snap(steps: np.ndarray, lattice: np.ndarray, ppb: int) -> np.ndarray:
    """Positions in grid steps rounded to the nearest point of the lattice (whole steps)."""
    whole = np.floor(steps / ppb)
    points = np.append(lattice, ppb)  # the next beat's start closes the lattice
    frac = steps - whole * ppb
    nearest = points[np.abs(points[None, :] - frac[:, None]).argmin(axis=1)]
    return (whole * ppb + nearest).astype(np.int64)


def _metres_at(score: Score, lines: np.ndarray, tpq: int, ppb: int) -> list:
    """The metre of every bar starting at `lines` (grid steps)."""
    sigs = sorted(
        (int(round(t.time / tpq * ppb)), (t.numerator, t.denominator))
        for t in score.time_signatures
    )
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, (4, 4)))
    starts = np.array([s[0] for s in sigs])
    return [sigs[int(np.searchsorted(starts, b, side="right")) - 1][1] for b in lines]
