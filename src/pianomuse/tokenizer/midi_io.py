"""Reading MIDI robustly and turning any MIDI file into one piano part.

Every error a user can cause (a missing file, a text file, a truncated MIDI, a drum loop)
becomes a `MidiInputError` with one readable line, so the CLI can print it and exit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from symusic import Note, Score, Track
from symusic.core import ScoreTick

from pianomuse.atomic import write_bytes_atomic
from pianomuse.errors import UserError
from pianomuse.limits import MAX_BEATS, MAX_MIDI_BYTES, MAX_NOTES

# symusic's `Score` is a factory, so the union names its tick-time class.
MidiSource = Union[str, os.PathLike, bytes, ScoreTick]  # noqa: UP007


class MidiInputError(UserError, ValueError):
    """A MIDI input that cannot be used; the message is one line meant for the user."""


def read_midi_bytes(path: str | os.PathLike) -> bytes:
    """Read a file's bytes, turning OS errors and non-MIDI content into `MidiInputError`."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise MidiInputError(f"{p}: no such file") from None
    except OSError as e:
        raise MidiInputError(f"{p}: cannot read ({e.strerror})") from None
    if p.is_dir():
        raise MidiInputError(f"{p}: is a directory, not a MIDI file")
    if size > MAX_MIDI_BYTES:
        raise MidiInputError(f"{p}: {size / 1e6:.1f} MB is too large for a MIDI file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise MidiInputError(f"{p}: cannot read ({e.strerror})") from None
    return data


def parse_midi(data: bytes, name: str = "input", max_beats: int = MAX_BEATS) -> Score:
    """Parse MIDI bytes; refuses empty, non-MIDI, corrupted and unbounded data (see
    `check_bounds`) with one clear line."""
    if len(data) == 0:
        raise MidiInputError(f"{name}: the file is empty")
    if len(data) > MAX_MIDI_BYTES:
        raise MidiInputError(f"{name}: {len(data) / 1e6:.1f} MB is too large for a MIDI file")
    # 'RIFF' is the RMID wrapper some Windows tools write around a standard MIDI file.
    if not (data.startswith(b"MThd") or data.startswith(b"RIFF")):
        raise MidiInputError(f"{name}: not a MIDI file (no MThd header)")
    if data.startswith(b"MThd") and len(data) >= 14 and data[12:14] == b"\x00\x00":
        raise MidiInputError(
            f"{name}: the file says 0 ticks per quarter note (not a playable file)"
        )
    _check_chunks(data, name)
    try:
        score = Score.from_midi(data)
    except Exception as e:  # symusic raises plain RuntimeErrors with parser details
        raise MidiInputError(f"{name}: corrupted MIDI file ({str(e).splitlines()[0]})") from None
    return check_bounds(score, name, max_beats)


def _check_chunks(data: bytes, name: str) -> None:
    """Refuse a file whose chunks run past its end (a truncated download or copy). symusic
    0.5 reads a chunk as long as its header says, past the end of the bytes it was given:
    on a truncated file it read whatever memory followed, and answered differently from one
    run to the next. Checked here, every chunk it reads lies inside the file."""
    at, end = data.find(b"MThd"), len(data)  # MThd at 0, or inside an RMID wrapper
    if at < 0:
        raise MidiInputError(f"{name}: not a MIDI file (no MThd header)")
    riff = data.find(b"data") if data.startswith(b"RIFF") else -1
    if 0 <= riff < at:  # RMID: the standard MIDI file is the RIFF "data" chunk
        end = min(end, riff + 8 + int.from_bytes(data[riff + 4 : riff + 8], "little"))
    while at + 8 <= end:
        size = int.from_bytes(data[at + 4 : at + 8], "big")
        if at + 8 + size > end:
            raise MidiInputError(
                f"{name}: corrupted MIDI file (a {data[at : at + 4].decode('latin-1')} chunk "
                f"of {size} bytes runs {at + 8 + size - end} bytes past the end: truncated?)"
            )
        at += 8 + size


def check_bounds(score: Score, name: str = "input", max_beats: int = MAX_BEATS) -> Score:
    """Refuse a piece whose work would not be bounded: no time resolution, too many notes,
    or any event (not only notes: tempo and metre changes, markers, controllers) beyond
    `max_beats`."""
    if score.tpq <= 0:
        raise MidiInputError(
            f"{name}: the file says 0 ticks per quarter note (not a playable file)"
        )
    if score.note_num() > MAX_NOTES:
        raise MidiInputError(f"{name}: {score.note_num()} notes is too long a piece")
    beats = score.end() / score.tpq
    if beats > max_beats:
        raise MidiInputError(
            f"{name}: {beats:.0f} beats long; at most {max_beats} allowed (every event counts)"
        )
    return score


def load_score(src: MidiSource) -> Score:
    """A symusic Score (tick time) from a path, raw bytes or a Score."""
    return load_midi(src)[0]


def load_midi(src: MidiSource, name: str | None = None) -> tuple[Score, bytes]:
    """A MIDI source as a Score (tick time) and as the bytes of its file (a Score given in
    Python is written out once, so that every source has bytes to keep)."""
    if isinstance(src, Score):
        score = src.copy() if isinstance(src, ScoreTick) else src.to("tick")
        return check_bounds(score, name or "input"), midi_bytes(score)
    if isinstance(src, bytes):
        return parse_midi(src, name=name or "input"), src
    data = read_midi_bytes(src)
    return parse_midi(data, name=name or str(src)), data


def source_name(src: MidiSource) -> str:
    """How messages name a source: its path, or "input" for bytes and Scores."""
    return str(src) if isinstance(src, str | os.PathLike) else "input"


def merge_to_piano(score: Score, name: str = "input") -> Score:
    """One piano track (program 0) holding the notes of every non-drum track.

    POP909's MELODY, BRIDGE and PIANO tracks are all played on the piano, so merging them is
    what a pianist would play; drum tracks carry no pitches and are dropped.
    """
    tracks = [t for t in score.tracks if not t.is_drum and len(t.notes) > 0]
    if not tracks:
        if any(t.is_drum and len(t.notes) > 0 for t in score.tracks):
            raise MidiInputError(f"{name}: contains only drum tracks, no piano notes")
        raise MidiInputError(f"{name}: contains no notes")
    arrays = [t.notes.numpy() for t in tracks]
    cols = {k: np.concatenate([a[k] for a in arrays]) for k in arrays[0]}
    order = np.lexsort((cols["pitch"], cols["time"]))  # by time, then pitch
    piano = Track(name="Piano", program=0, is_drum=False, ttype=score.ttype)
    piano.notes = Note.from_numpy(
        cols["time"][order],
        cols["duration"][order],
        cols["pitch"][order],
        cols["velocity"][order],
        score.ttype,
    )
    for t in tracks:  # sustain pedals matter on a piano; keep them from every part
        piano.pedals.extend(t.pedals)
    out = Score(score.tpq, ttype=score.ttype)
    out.tempos = score.tempos.copy()
    out.time_signatures = score.time_signatures.copy()
    out.key_signatures = score.key_signatures.copy()
    out.tracks.append(piano)
    return out


def write_midi_atomic(score: Score, path: str | os.PathLike) -> None:
    """Write a MIDI file through a temporary file and a rename: never a half-written file."""
    write_bytes_atomic(score.dumps_midi(), path)


def notes_in_beats(score: Score) -> dict[str, np.ndarray]:
    """All notes of a score as arrays, times in quarter-note beats, sorted by onset then pitch.

    Keys: onset, duration (float64 beats), pitch, velocity (int64). The rest of the project
    measures music through this instead of touching symusic objects.
    """
    tracks = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    if not tracks:
        z = np.zeros(0)
        return {
            "onset": z,
            "duration": z,
            "pitch": z.astype(np.int64),
            "velocity": z.astype(np.int64),
        }
    cols = {k: np.concatenate([t[k] for t in tracks]) for k in tracks[0]}
    order = np.lexsort((cols["pitch"], cols["time"]))
    tpq = float(score.tpq)
    return {
        "onset": cols["time"][order] / tpq,
        "duration": cols["duration"][order] / tpq,
        "pitch": cols["pitch"][order].astype(np.int64),
        "velocity": cols["velocity"][order].astype(np.int64),
    }


def melody_flags(score: Score) -> np.ndarray:
    """For each note in `notes_in_beats`' order: whether its track is a melody (named
    "Melody", as tokenizer v2 writes it, or "MELODY", as POP909 names it)."""
    tracks = [t for t in score.tracks if not t.is_drum and len(t.notes)]
    if not tracks:
        return np.zeros(0, bool)
    arrays = [t.notes.numpy() for t in tracks]
    flags = np.concatenate(
        [
            np.full(len(a["time"]), t.name.strip().lower() == "melody")
            for t, a in zip(tracks, arrays, strict=True)
        ]
    )
    time = np.concatenate([a["time"] for a in arrays])
    pitch = np.concatenate([a["pitch"] for a in arrays])
    return flags[np.lexsort((pitch, time))]


def seconds_at(score: Score, beats: np.ndarray) -> np.ndarray:
    """Seconds from the start of a score at the given quarter-note beats, through its tempo
    map (120 qpm before the first tempo event, as the MIDI standard says)."""
    tpq = float(score.tpq)
    t = [0.0] + [tp.time / tpq for tp in score.tempos if tp.time > 0]  # tempo changes, beats
    qpm = [120.0] + [tp.qpm for tp in score.tempos if tp.time > 0]
    if len(score.tempos) and score.tempos[0].time == 0:
        qpm[0] = score.tempos[0].qpm
    t_arr, spb = np.asarray(t), 60.0 / np.asarray(qpm)  # seconds per beat in each segment
    starts = np.concatenate([[0.0], np.cumsum(np.diff(t_arr) * spb[:-1])])  # seconds at t
    b = np.asarray(beats, dtype=np.float64)
    k = np.clip(np.searchsorted(t_arr, b, side="right") - 1, 0, len(t_arr) - 1)
    return starts[k] + (b - t_arr[k]) * spb[k]


def midi_bytes(score: Score) -> bytes:
    """A score as standard MIDI file bytes."""
    return bytes(score.dumps_midi())


def cut_score(score: Score, tick: int) -> Score:
    """The part of `score` before `tick`: notes starting earlier (kept whole), the tempo,
    metre, marker and controller events before it, and the sustain pedal up to it (a pedal
    held across the cut would otherwise hold the notes for as long as the song went on)."""
    out = score.copy()
    for track in out.tracks:
        track.notes = track.notes.filter(lambda n: n.time < tick)
        track.controls = track.controls.filter(lambda c: c.time < tick)
        pedals = track.pedals.filter(lambda p: p.time < tick)
        for p in pedals:
            p.duration = min(p.duration, tick - p.time)
        track.pedals = pedals
    out.tempos = out.tempos.filter(lambda t: t.time < tick)
    out.time_signatures = out.time_signatures.filter(lambda t: t.time < tick)
    out.markers = out.markers.filter(lambda m: m.time < tick)
    return out
