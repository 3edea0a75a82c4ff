"""Everything that touches MIDI: reading, beat alignment and REMI tokenization.

This package is the only place that imports miditok or symusic; the rest of Piano Muse sees
token ids and `symusic.Score` objects handed out from here.
"""

from pianomuse.tokenizer.align import BeatTrack, align_to_beats, onset_grid_share, read_beats
from pianomuse.tokenizer.base import TOKENIZER_FILE, Tokenizer
from pianomuse.tokenizer.metre import Metre
from pianomuse.tokenizer.midi_io import (
    MidiInputError,
    MidiSource,
    cut_score,
    load_score,
    melody_flags,
    merge_to_piano,
    midi_bytes,
    notes_in_beats,
    seconds_at,
    write_midi_atomic,
)
from pianomuse.tokenizer.piece import Piece, blank_piece
from pianomuse.tokenizer.remi import PianoTokenizer, TokenizerSettings
from pianomuse.tokenizer.remi2 import PianoTokenizerV2, TokenizerSettingsV2
from pianomuse.tokenizer.roundtrip import Survival, round_trip, triplet_share
from pianomuse.tokenizer.structure import Header, Kind, Structure

__all__ = [
    "TOKENIZER_FILE",
    "BeatTrack",
    "Header",
    "Kind",
    "Metre",
    "MidiInputError",
    "MidiSource",
    "PianoTokenizer",
    "PianoTokenizerV2",
    "Piece",
    "Structure",
    "Survival",
    "Tokenizer",
    "TokenizerSettings",
    "TokenizerSettingsV2",
    "align_to_beats",
    "blank_piece",
    "cut_score",
    "load_score",
    "merge_to_piano",
    "midi_bytes",
    "melody_flags",
    "notes_in_beats",
    "onset_grid_share",
    "read_beats",
    "round_trip",
    "triplet_share",
    "seconds_at",
    "write_midi_atomic",
]
