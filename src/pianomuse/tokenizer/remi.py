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

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from symusic import Score

from pianomuse.tokenizer.base import FIM_TOKENS, Tokenizer, check_settings

if TYPE_CHECKING:
    import miditok
from pianomuse.tokenizer.midi_io import (
    MidiInputError,
    MidiSource,
    load_score,
    merge_to_piano,
    source_name,
)
from pianomuse.tokenizer.structure import Kind, Structure
from pianomuse.tokenizer.timing import bar_timing


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
        check_settings(self)
        if self.positions_per_beat not in (1, 2, 4, 8, 12, 16, 24, 32):
            raise ValueError("positions_per_beat must be one of 1, 2, 4, 8, 12, 16, 24, 32")
        if self.max_duration_beats < 4:
            raise ValueError("max_duration_beats must be at least 4")

    def miditok_config(self) -> miditok.TokenizerConfig:
        # Imported here: miditok brings huggingface_hub, 0.4-1 s of a command's start, and a
        # version 2 tokenizer never needs it.
        import miditok

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


class PianoTokenizer(Tokenizer):
    """Version 1: MIDI <-> REMI token ids for one merged piano part, with miditok."""

    version = 1

    def __init__(self, settings: TokenizerSettings | None = None):
        import miditok  # see `TokenizerSettings.miditok_config`

        self.settings = settings or TokenizerSettings()
        self._remi = miditok.REMI(self.settings.miditok_config())
        self.vocab: list[str] = [
            tok for tok, _ in sorted(self._remi.vocab.items(), key=lambda kv: kv[1])
        ]
        self.structure = Structure(self.vocab)

    @property
    def velocity_bins(self) -> list[int]:
        """The MIDI velocities the velocity tokens stand for."""
        return [int(v) for v in self._remi.velocities]

    def _config(self) -> dict:
        return {
            "settings": asdict(self.settings),
            "miditok_version": _miditok_version(),
            "vocab": self.vocab,
        }

    @classmethod
    def _from_config(cls, cfg: dict) -> PianoTokenizer:
        settings = dict(cfg["settings"])
        settings["special_tokens"] = tuple(settings["special_tokens"])
        return cls(TokenizerSettings(**settings))

    def vocabulary_mismatch(self, cfg: dict) -> str:
        return (
            "the saved tokenizer's vocabulary differs from this miditok version's; "
            f"saved with miditok {cfg.get('miditok_version')}, running {_miditok_version()}"
        )

    # ----- MIDI <-> tokens ---------------------------------------------------------------
    def piano_score(
        self, src: MidiSource, name: str | None = None, as_part: int | None = None
    ) -> Score:
        """Any MIDI source as the model reads it: one piano part that ends with the bar of its
        last onset (tempo and metre events after it change no note, and would only add empty
        bars), the metre map the tokens carry (`normalise_metre`), one tempo per bar. (This
        version has no parts: `as_part` changes nothing.)"""
        name = name or source_name(src)
        return bar_timing(merge_to_piano(load_score(src), name=name), self.metres, name)

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

    def tokens_errors(self, ids: np.ndarray | list[int]) -> float:
        """miditok's grammar error rate of a token sequence (0.0 = valid REMI)."""
        ids = [int(i) for i in ids if self.structure.kind[int(i)] != Kind.SPECIAL]
        import miditok

        return float(self._remi.tokens_errors(miditok.TokSequence(ids=ids)))


def _miditok_version() -> str:
    from importlib.metadata import version

    return version("miditok")
