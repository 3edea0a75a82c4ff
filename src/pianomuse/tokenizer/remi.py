"""The piano REMI tokenizer: miditok's REMI configured for solo piano, wrapped, not subclassed.

Choices (round-trip figures over the 800 aligned POP909 songs are in the README):
- one stream for the whole piece: every non-drum track merged into one piano part (the
  model writes piano music, not an arrangement), drums dropped;
- pitch range 21–108, the 88 keys of a piano;
- 8 positions per beat (32nd notes) for onsets and durations up to 4 beats, 4 per beat up to
  12 beats: POP909, once aligned, sits on a 16th grid with some 32nd ornaments, and longer
  notes are sustained chords where a 16th of precision is inaudible;
- 32 velocity bins: a piano's dynamics in steps of 4 MIDI velocities;
- time-signature tokens after each Bar (miditok's REMI layout), so every bar states its metre;
- tempo tokens, 32 bins on a log scale over 40–250 qpm (equal ratios are equal musical steps),
  one tempo per bar: the beat-by-beat wobble of a performance is timing, not composition;
- sustain pedal off: POP909 has none and pedal tokens would double the sequence length of
  pedalled pieces for little gain on an already-legato model;
- special tokens PAD, BOS, EOS and four fill-in-the-middle markers (used for infilling);
- no BPE: merged tokens would hide the note atoms and bar lines that window cutting and the
  copilot's grammar mask rely on, and a 392-token vocabulary is already cheap to embed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import miditok
import numpy as np
from symusic import Score, Tempo

from pianomuse.atomic import write_bytes_atomic
from pianomuse.errors import UserError
from pianomuse.tokenizer.metre import Metre, normalise_metre
from pianomuse.tokenizer.midi_io import (
    MidiInputError,
    MidiSource,
    load_midi,
    load_score,
    merge_to_piano,
    source_name,
)
from pianomuse.tokenizer.piece import Piece
from pianomuse.tokenizer.structure import Kind, Structure

TOKENIZER_FILE = "tokenizer.json"
FIM_TOKENS = ("FIM_Suffix", "FIM_Prefix", "FIM_Middle", "FIM_End")


@dataclass(frozen=True)
class TokenizerSettings:
    """Everything that determines the vocabulary and the encoding."""

    pitch_low: int = 21  # lowest piano key (A0)
    pitch_high: int = 108  # highest piano key (C8)
    positions_per_beat: int = 8  # onset and short-duration resolution (8 = 32nd notes)
    max_duration_beats: int = 12  # longest representable note, in beats
    num_velocities: int = 32  # velocity bins over 1..127
    num_tempos: int = 32  # tempo bins
    tempo_low: int = 40  # slowest tempo token, quarter notes per minute
    tempo_high: int = 250  # fastest tempo token
    special_tokens: tuple[str, ...] = field(default=("PAD", "BOS", "EOS", *FIM_TOKENS))

    def __post_init__(self) -> None:
        if not 0 <= self.pitch_low < self.pitch_high <= 127:
            raise ValueError("pitch range must satisfy 0 <= low < high <= 127")
        if self.positions_per_beat not in (1, 2, 4, 8, 12, 16, 24, 32):
            raise ValueError("positions_per_beat must be one of 1, 2, 4, 8, 12, 16, 24, 32")
        if self.max_duration_beats < 4:
            raise ValueError("max_duration_beats must be at least 4")
        if not 2 <= self.num_velocities <= 127 or self.num_tempos < 2:
            raise ValueError("num_velocities must be in 2..127 and num_tempos >= 2")
        if not 0 < self.tempo_low < self.tempo_high:
            raise ValueError("tempo range must satisfy 0 < low < high")
        if self.special_tokens[:1] != ("PAD",):
            raise ValueError("PAD must be the first special token (id 0)")

    def miditok_config(self) -> miditok.TokenizerConfig:
        res = self.positions_per_beat
        return miditok.TokenizerConfig(
            pitch_range=(self.pitch_low, self.pitch_high),  # inclusive at both ends in miditok 3
            beat_res={(0, 4): res, (4, self.max_duration_beats): max(res // 2, 1)},
            num_velocities=self.num_velocities,
            special_tokens=list(self.special_tokens),
            use_tempos=True,
            num_tempos=self.num_tempos,
            tempo_range=(self.tempo_low, self.tempo_high),
            log_tempos=True,
            delete_equal_successive_tempo_changes=True,
            use_time_signatures=True,
            delete_equal_successive_time_sig_changes=True,
            use_sustain_pedals=False,
            use_programs=False,
            remove_duplicated_notes=True,
        )


class PianoTokenizer:
    """MIDI <-> REMI token ids for solo piano, with a saved configuration and its hash."""

    def __init__(self, settings: TokenizerSettings | None = None):
        self.settings = settings or TokenizerSettings()
        self._remi = miditok.REMI(self.settings.miditok_config())
        self.vocab: list[str] = [
            tok for tok, _ in sorted(self._remi.vocab.items(), key=lambda kv: kv[1])
        ]
        self.structure = Structure(self.vocab)

    # ----- identity ----------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self.structure.id["PAD_None"]

    def special_id(self, name: str) -> int:
        """Id of a special token by its name (e.g. "BOS", "FIM_Middle")."""
        return self.structure.id[name if "_" in name else f"{name}_None"]

    @property
    def velocity_bins(self) -> list[int]:
        """The MIDI velocities the velocity tokens stand for."""
        return [int(v) for v in self._remi.velocities]

    def config(self) -> dict:
        """The full configuration: our settings, miditok's config, the vocabulary."""
        return {
            "format": "pianomuse-remi",
            "version": 1,
            "settings": asdict(self.settings),
            "miditok_version": _miditok_version(),
            "vocab": self.vocab,
        }

    @property
    def hash(self) -> str:
        """Short sha256 of the settings and vocabulary: equal hashes encode identically."""
        cfg = self.config()
        key = json.dumps({"settings": cfg["settings"], "vocab": cfg["vocab"]}, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `tokenizer.json` (config + hash) into `directory`; returns its path."""
        path = Path(directory) / TOKENIZER_FILE
        text = json.dumps({**self.config(), "hash": self.hash}, indent=1)
        write_bytes_atomic(text.encode(), path)
        return path

    @classmethod
    def from_config(cls, cfg: dict, what: str = "the tokenizer configuration") -> PianoTokenizer:
        """The tokenizer a saved configuration describes; anything malformed is one line
        naming `what` held it."""
        try:
            settings = dict(cfg["settings"])
            settings["special_tokens"] = tuple(settings["special_tokens"])
            tok = cls(TokenizerSettings(**settings))
            vocab = list(cfg["vocab"])
        except KeyError as e:
            raise UserError(f"{what} is unreadable: it has no {e}") from None
        except (TypeError, ValueError) as e:
            raise UserError(f"{what} is unreadable: {str(e).splitlines()[0]}") from None
        if tok.vocab != vocab:
            raise UserError(
                "the saved tokenizer's vocabulary differs from this miditok version's; "
                f"saved with miditok {cfg.get('miditok_version')}, running {_miditok_version()}"
            )
        return tok

    @classmethod
    def load(cls, path: str | os.PathLike) -> PianoTokenizer:
        """Load from a `tokenizer.json` file or a folder holding one."""
        p = Path(path)
        if p.is_dir():
            p = p / TOKENIZER_FILE
        try:
            cfg = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{p}: not a readable tokenizer config ({e})") from None
        return cls.from_config(cfg, what=str(p))

    def check_hash(self, expected: str, what: str = "the model") -> None:
        """Refuse to pair with data or a model made by a tokenizer with another hash."""
        if expected != self.hash:
            raise UserError(
                f"{what} was made with tokenizer {expected}, but this tokenizer is {self.hash}; "
                "use the tokenizer.json saved beside it"
            )

    # ----- MIDI <-> tokens ---------------------------------------------------------------
    @property
    def metres(self) -> list[Metre]:
        """The metres the vocabulary has a TimeSig token for."""
        return list(self.structure.metre.values())

    def piano_score(self, src: MidiSource, name: str | None = None) -> Score:
        """Any MIDI source as the model reads it: one piano part that ends with the bar of its
        last onset (tempo and metre events after it change no note, and would only add empty
        bars), the metre map the tokens carry (`normalise_metre`), one tempo per bar."""
        name = name or source_name(src)
        piano = merge_to_piano(load_score(src), name=name)
        last = int(piano.tracks[0].notes.numpy()["time"].max())
        piano.tempos = piano.tempos.filter(lambda t: t.time <= last)
        piano.time_signatures = piano.time_signatures.filter(lambda t: t.time <= last)
        return _tempo_per_bar(normalise_metre(piano, self.metres, name=name))

    def read_piece(self, src: MidiSource, name: str | None = None) -> Piece:
        """A user's piece: the file as given (Score and bytes) and its token reading, with
        the bar lines the tokens put down (see `Piece`)."""
        name = name or source_name(src)
        source, data = load_midi(src, name=name)
        ids = self._encode(self.piano_score(source, name=name))
        st = self.structure
        ticks = np.round(st.bar_lines(ids) * source.tpq).astype(np.int64)
        metres = [st.metre[int(t)] if t >= 0 else (4, 4) for t in st.bar_metres(ids)]
        return Piece(name, source, data, ids, ticks, metres)

    def encode(self, src: MidiSource) -> np.ndarray:
        """Token ids (T,) int64 of a MIDI source (path, bytes or Score)."""
        return self._encode(self.piano_score(src))

    def _encode(self, score: Score) -> np.ndarray:
        seq = self._remi.encode(score)
        seq = seq[0] if isinstance(seq, list) else seq
        ids = np.asarray(seq.ids, dtype=np.int64)
        if len(ids) == 0 or not (self.structure.kinds(ids) == Kind.PITCH).any():
            raise MidiInputError("no notes left inside the piano range")
        return ids

    def decode(self, ids: np.ndarray | list[int]) -> Score:
        """A one-track piano Score from token ids (special tokens are ignored)."""
        ids = [int(i) for i in ids if self.structure.kind[int(i)] != Kind.SPECIAL]
        return self._remi.decode([ids])

    def tokens(self, ids: np.ndarray | list[int]) -> list[str]:
        """Vocabulary strings of token ids."""
        return [self.vocab[int(i)] for i in ids]

    def tokens_errors(self, ids: np.ndarray | list[int]) -> float:
        """miditok's grammar error rate of a token sequence (0.0 = valid REMI)."""
        ids = [int(i) for i in ids if self.structure.kind[int(i)] != Kind.SPECIAL]
        return float(self._remi.tokens_errors(miditok.TokSequence(ids=ids)))


def _miditok_version() -> str:
    from importlib.metadata import version

    return version("miditok")


def _bar_ticks(score: Score) -> np.ndarray:
    """Tick of every bar line of a score, from its time signatures (4/4 when it has none)."""
    tpq = score.tpq
    sigs = sorted((ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures)
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    end = max(score.end(), 1)
    bars: list[int] = []
    for j, (t, num, den) in enumerate(sigs):
        stop = sigs[j + 1][0] if j + 1 < len(sigs) else end + 1
        length = max(num * tpq * 4 // den, 1)
        bars.extend(range(t, stop, length))
    return np.asarray(bars, dtype=np.int64)


def _tempo_per_bar(score: Score) -> Score:
    """Replace a tempo map by the mean tempo of each bar (time-weighted, so the bar lasts
    as long as before); a single-tempo score is returned unchanged."""
    if len(score.tempos) <= 1:
        return score
    tpq = score.tpq
    t = np.array([tp.time for tp in score.tempos], dtype=np.int64)
    qpm = np.array([tp.qpm for tp in score.tempos], dtype=np.float64)
    bars = _bar_ticks(score)
    edges = np.append(bars, bars[-1] + (bars[-1] - bars[-2] if len(bars) > 1 else 4 * tpq))
    # Seconds elapsed at a tick: integrate 60/qpm over quarter notes of the piecewise tempo.
    seg_sec = np.diff(t) / tpq * 60.0 / qpm[:-1]
    cum = np.concatenate([[0.0], np.cumsum(seg_sec)])

    def seconds(x: np.ndarray) -> np.ndarray:
        j = np.clip(np.searchsorted(t, x, side="right") - 1, 0, None)
        return cum[j] + (x - t[j]) / tpq * 60.0 / qpm[j]

    sec = seconds(edges)
    bar_qpm = np.diff(edges) / tpq * 60.0 / np.maximum(np.diff(sec), 1e-9)
    out = score.copy()
    out.tempos = [Tempo(int(b), float(q)) for b, q in zip(bars, bar_qpm, strict=True)]
    return out
