"""Musical structure of token streams: kinds, note atoms, bars, safe cuts and headers."""

from __future__ import annotations

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature, Track

from pianomuse.tokenizer import Kind, notes_in_beats


def test_kinds_and_note_groups(tok, song_ids):
    st = tok.structure
    k = st.kinds(song_ids)
    groups = st.note_groups(song_ids)
    assert len(groups) == np.sum(k == Kind.PITCH) == np.sum(k == Kind.VELOCITY)
    assert np.all(k[groups[:, 0]] == Kind.PITCH)
    assert np.all(k[groups[:, 1]] == Kind.VELOCITY)
    assert np.all(k[groups[:, 2]] == Kind.DURATION)
    for i in range(0, len(song_ids), 997):
        assert (
            tok.vocab[song_ids[i]]
            .split("_")[0]
            .upper()
            .startswith(
                {
                    Kind.BAR: "BAR",
                    Kind.TIMESIG: "TIMESIG",
                    Kind.POSITION: "POSITION",
                    Kind.TEMPO: "TEMPO",
                    Kind.PITCH: "PITCH",
                    Kind.VELOCITY: "VELOCITY",
                    Kind.DURATION: "DURATION",
                }[Kind(k[i])]
            )
        )


def test_safe_cuts_never_split_a_note(tok, song_ids):
    st = tok.structure
    k = st.kinds(song_ids)
    cuts = st.safe_cuts(song_ids)
    assert set(k[cuts]) <= {Kind.BAR, Kind.POSITION, Kind.PITCH}
    assert np.array_equal(st.bar_starts(song_ids), np.flatnonzero(k == Kind.BAR))
    # Every cut leaves a prefix of whole notes: the prefix decodes without grammar errors.
    for c in cuts[:: max(len(cuts) // 25, 1)]:
        assert tok.tokens_errors(song_ids[:c]) == 0.0


def test_header_at_matches_a_plain_scan(tok, song_ids):
    st = tok.structure
    ts_all, tempo_all = st.headers(song_ids)
    for i in [1, 5, 100, 1000, len(song_ids) - 1]:
        h = st.header_at(song_ids, i)
        ts = [t for t in song_ids[:i] if tok.vocab[t].startswith("TimeSig")]
        tp = [t for t in song_ids[:i] if tok.vocab[t].startswith("Tempo")]
        assert h.time_sig == (ts[-1] if ts else -1) == ts_all[i]
        assert h.tempo == (tp[-1] if tp else -1) == tempo_all[i]


def test_window_at_a_bar_keeps_header_and_notes(tok, song_ids):
    st = tok.structure
    bars = st.bar_starts(song_ids)
    full = notes_in_beats(tok.decode(song_ids))
    for b in (1, 7, 30):
        start = int(bars[b])
        w = st.with_header(song_ids, start)
        assert st.kinds(w[:2]).tolist() == [Kind.BAR, Kind.TIMESIG]
        assert Kind.TEMPO in st.kinds(w[:4])
        assert st.header_at(w, 4).tempo == st.header_at(song_ids, start + 3).tempo
        assert tok.tokens_errors(w) == 0.0
        # The window's notes are the song's notes from that bar on, shifted to time 0.
        part = notes_in_beats(tok.decode(w))
        bar_beat = 4.0 * b  # song 001 is in 4/4 throughout
        keep = full["onset"] >= bar_beat - 1e-9
        assert np.allclose(part["onset"], full["onset"][keep] - bar_beat)
        assert np.array_equal(part["pitch"], full["pitch"][keep])


def test_mid_bar_cut_reopens_the_bar_at_its_position(tok):
    # One very dense 3/4 bar: a window must start inside it, at a note.
    s = Score(480)
    s.time_signatures.append(TimeSignature(0, 3, 4))
    s.tempos.append(Tempo(0, 100.0))
    t = Track(program=0)
    for i in range(48):
        t.notes.append(Note(i * 30, 30, 40 + i, 80))
    s.tracks.append(t)
    ids = tok.encode(s)
    st = tok.structure
    pitch_starts = np.flatnonzero(st.kinds(ids) == Kind.PITCH)
    start = int(pitch_starts[20])
    w = st.with_header(ids, start)
    assert tok.tokens(w[:4])[:2] == ["Bar_None", "TimeSig_3/4"]
    assert st.kinds(w[2:4]).tolist() == [Kind.POSITION, Kind.TEMPO]
    assert w[2] == st._position_before(ids, start)
    assert tok.tokens_errors(w) == 0.0
