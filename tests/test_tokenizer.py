"""The piano REMI tokenizer: vocabulary, configuration hash, round trip, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from symusic import Note, Score, Track

from conftest import POP909, SONGS, aligned_song
from pianomuse.errors import UserError
from pianomuse.tokenizer import (
    Kind,
    MidiInputError,
    PianoTokenizer,
    TokenizerSettings,
    load_score,
    notes_in_beats,
    round_trip,
)


def test_vocabulary_is_the_piano_keyboard(tok):
    pitches = [int(t.split("_")[1]) for t in tok.vocab if t.startswith("Pitch_")]
    assert pitches == list(range(21, 109))
    assert tok.vocab[0] == "PAD_None" and tok.pad_id == 0
    for name in ("BOS", "EOS", "FIM_Suffix", "FIM_Prefix", "FIM_Middle", "FIM_End"):
        assert tok.structure.kind[tok.special_id(name)] == Kind.SPECIAL
    assert any(t.startswith("TimeSig_3/4") for t in tok.vocab)
    assert sum(t.startswith("Tempo_") for t in tok.vocab) == 32


def test_config_hash_round_trip_and_mismatch(tok, tmp_path):
    path = tok.save(tmp_path)
    saved = json.loads(path.read_text())
    assert saved["hash"] == tok.hash
    again = PianoTokenizer.load(tmp_path)
    assert again.hash == tok.hash and again.vocab == tok.vocab
    other = PianoTokenizer(TokenizerSettings(num_velocities=16))
    assert other.hash != tok.hash
    with pytest.raises(UserError, match="tokenizer"):
        other.check_hash(tok.hash)
    tok.check_hash(again.hash)


@pytest.mark.parametrize("song", SONGS[:3])
def test_round_trip_on_real_songs(tok, song):
    aligned = aligned_song(song)
    s = round_trip(tok, aligned)
    assert s.kept / s.distinct >= 0.995  # every note one piano can play survives
    assert s.kept / s.notes >= 0.95  # the rest are unison doublings between tracks
    assert s.velocity_ok / s.kept >= 0.99
    assert tok.tokens_errors(tok.encode(aligned)) == 0.0


def test_tracks_are_merged_into_one_piano(tok):
    raw = load_score(POP909 / "001" / "001.mid")
    assert len(raw.tracks) == 3
    piano = tok.piano_score(raw)
    assert len(piano.tracks) == 1 and piano.tracks[0].program == 0
    assert len(piano.tracks[0].notes) == sum(len(t.notes) for t in raw.tracks)
    decoded = tok.decode(tok.encode(raw))
    assert len(decoded.tracks) == 1


def _score(tracks: list[tuple[bool, list[tuple[int, int, int]]]]) -> bytes:
    s = Score(480)
    for is_drum, notes in tracks:
        t = Track(is_drum=is_drum, program=0)
        for time, dur, pitch in notes:
            t.notes.append(Note(time, dur, pitch, 90))
        s.tracks.append(t)
    return s.dumps_midi()


def test_drums_are_dropped_and_out_of_range_pitches_removed(tok):
    data = _score([(True, [(0, 240, 36)]), (False, [(0, 240, 60), (480, 240, 10)])])
    ids = tok.encode(data)
    n = notes_in_beats(tok.decode(ids))
    assert n["pitch"].tolist() == [60]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, this is text", "not a MIDI file"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x05\x01\xe0MTrk\x00\x00\xff", "corrupted"),
        ("drums", "only drum"),
        ("nonotes", "no notes"),
    ],
)
def test_bad_midi_is_one_clear_error(tok, data, message):
    if data == "drums":
        data = _score([(True, [(0, 240, 36), (480, 240, 38)])])
    elif data == "nonotes":
        data = _score([(False, [])])
    with pytest.raises(MidiInputError, match=message):
        tok.encode(data)


def test_missing_file_is_a_user_error(tok, tmp_path):
    with pytest.raises(MidiInputError, match="no such file"):
        tok.encode(tmp_path / "absent.mid")
    with pytest.raises(MidiInputError, match="directory"):
        tok.encode(tmp_path)


def test_tempo_is_one_per_bar_and_survives(tok):
    aligned = aligned_song("002")
    ids = tok.encode(aligned)
    k = tok.structure.kinds(ids)
    tempos = np.flatnonzero(k == Kind.TEMPO)
    assert len(tempos) >= 1
    # Every Tempo token directly follows a Position_0: tempo changes happen at bar lines.
    assert all(ids[i - 1] == tok.structure.position_zero for i in tempos)
    assert np.all(k[tempos - 2] == Kind.TIMESIG)
    decoded = tok.decode(ids)
    assert abs(decoded.tempos[0].qpm - aligned.tempos[0].qpm) / aligned.tempos[0].qpm < 0.05
