"""What every version of the tokenizer shares: its identity (configuration, hash, file) and the
reading of a user's piece. A version is a subclass registered under its number; a saved
configuration names its version, so data and models find the tokenizer they were made with.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from symusic import Score

from pianomuse.atomic import write_bytes_atomic
from pianomuse.errors import UserError
from pianomuse.tokenizer.metre import Metre
from pianomuse.tokenizer.midi_io import MidiSource, load_midi, source_name
from pianomuse.tokenizer.piece import Piece
from pianomuse.tokenizer.structure import Structure

TOKENIZER_FILE = "tokenizer.json"
FIM_TOKENS = ("FIM_Suffix", "FIM_Prefix", "FIM_Middle", "FIM_End")


def check_settings(s: Any) -> None:
    """The checks every version's settings share (pitch range, bins, special tokens)."""
    if not 0 <= s.pitch_low < s.pitch_high <= 127:
        raise ValueError("pitch range must satisfy 0 <= low < high <= 127")
    if not 2 <= s.num_velocities <= 127 or s.num_tempos < 2:
        raise ValueError("num_velocities must be in 2..127 and num_tempos >= 2")
    if not 0 < s.tempo_low < s.tempo_high:
        raise ValueError("tempo range must satisfy 0 < low < high")
    if s.special_tokens[:1] != ("PAD",):
        raise ValueError("PAD must be the first special token (id 0)")


class Tokenizer:
    """MIDI <-> token ids, with a saved configuration and its hash (see the subclasses)."""

    version: ClassVar[int]
    versions: ClassVar[dict[int, type[Tokenizer]]] = {}  # every registered version
    has_chords: ClassVar[bool] = False  # Chord and Bass tokens (`chord_ids`)
    has_parts: ClassVar[bool] = False  # melody and accompaniment blocks (`track_parts`)
    settings: Any  # the version's settings dataclass
    vocab: list[str]
    structure: Structure

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        Tokenizer.versions[cls.version] = cls

    @staticmethod
    def latest() -> Tokenizer:
        """The newest version with its default settings: what new data and models use."""
        return Tokenizer.versions[max(Tokenizer.versions)]()

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
    def metres(self) -> list[Metre]:
        """The metres the vocabulary has a TimeSig token for."""
        return list(self.structure.metre.values())

    def config(self) -> dict[str, Any]:
        """The full configuration: the version, its settings and the vocabulary."""
        return {"format": "pianomuse-remi", "version": self.version, **self._config()}

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def hash(self) -> str:
        """Short sha256 of the settings and vocabulary: equal hashes encode identically."""
        cfg = self.config()
        key = {"settings": cfg["settings"], "vocab": cfg["vocab"]}
        if self.version > 1:  # version 1's hash predates the field: kept as it was
            key["version"] = self.version
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `tokenizer.json` (config + hash) into `directory`; returns its path."""
        path = Path(directory) / TOKENIZER_FILE
        text = json.dumps({**self.config(), "hash": self.hash}, indent=1)
        write_bytes_atomic(text.encode(), path)
        return path

    @staticmethod
    def from_config(cfg: Any, what: str = "the tokenizer configuration") -> Tokenizer:
        """The tokenizer a saved configuration describes (of its version); anything malformed
        is one line naming `what` held it."""
        try:
            version = int(cfg.get("version", 1))
            kind = Tokenizer.versions[version]
        except (AttributeError, TypeError, ValueError):
            raise UserError(f"{what} is unreadable: not a tokenizer configuration") from None
        except KeyError:
            raise UserError(f"{what} needs tokenizer version {cfg['version']}") from None
        try:
            tok = kind._from_config(cfg)
            vocab = list(cfg["vocab"])
        except KeyError as e:
            raise UserError(f"{what} is unreadable: it has no {e}") from None
        except (TypeError, ValueError) as e:
            raise UserError(f"{what} is unreadable: {str(e).splitlines()[0]}") from None
        if tok.vocab != vocab:
            raise UserError(f"{what}: {tok.vocabulary_mismatch(cfg)}")
        return tok

    @classmethod
    def _from_config(cls, cfg: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    def vocabulary_mismatch(self, cfg: dict[str, Any]) -> str:
        return "the saved vocabulary differs from the one these settings make"

    @staticmethod
    def load(path: str | os.PathLike) -> Tokenizer:
        """Load from a `tokenizer.json` file or a folder holding one."""
        p = Path(path)
        if p.is_dir():
            p = p / TOKENIZER_FILE
        try:
            cfg = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{p}: not a readable tokenizer config ({e})") from None
        return Tokenizer.from_config(cfg, what=str(p))

    def check_hash(self, expected: str, what: str = "the model") -> None:
        """Refuse to pair with data or a model made by a tokenizer with another hash."""
        if expected != self.hash:
            raise UserError(
                f"{what} was made with tokenizer {expected}, but this is tokenizer "
                f"v{self.version} {self.hash} (another version or other settings); use the "
                "tokenizer.json saved beside it"
            )

    # ----- MIDI <-> tokens ---------------------------------------------------------------
    def piano_score(
        self, src: MidiSource, name: str | None = None, as_part: int | None = None
    ) -> Score:
        """Any MIDI source as the model reads it (see the version); `as_part` reads a file
        without parts as that one part (versions with parts)."""
        raise NotImplementedError

    def encode(self, src: MidiSource) -> np.ndarray:
        """Token ids (T,) int64 of a MIDI source (path, bytes or Score)."""
        return self._encode(self.piano_score(src))

    def _encode(self, score: Score) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids: np.ndarray | list[int]) -> Score:
        raise NotImplementedError

    def read_piece(
        self, src: MidiSource, name: str | None = None, as_part: int | None = None
    ) -> Piece:
        """A user's piece: the file as given (Score and bytes) and its token reading, with
        the bar lines the tokens put down (see `Piece`)."""
        name = name or source_name(src)
        source, data = load_midi(src, name=name)
        ids = self._encode(self.piano_score(source, name=name, as_part=as_part))
        st = self.structure
        ticks = np.round(st.bar_lines(ids) * source.tpq).astype(np.int64)
        metres = [st.metre[int(t)] if t >= 0 else (4, 4) for t in st.bar_metres(ids)]
        return Piece(name, source, data, ids, ticks, metres)

    def tokens(self, ids: np.ndarray | list[int]) -> list[str]:
        """Vocabulary strings of token ids."""
        return [self.vocab[int(i)] for i in ids]
