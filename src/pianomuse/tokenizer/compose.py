"""Putting generated music into a user's piece, which stays as the user gave it.

- A continuation keeps the user's file byte for byte: its track chunks are copied and one
  track holding the new bars is appended (a format-0 file becomes format 1). Nothing the
  user wrote is re-encoded, so every note, pedal, controller, name and program reads back
  exactly as from the original file.
- An infill removes the notes that start inside the gap from every track and adds the new
  bars on a track of their own; everything else stays.
- Generated notes never overlap a same-key note of the kept music (the grammar forbids it,
  from `seam_keys`), and a generated note that is still sounding when its own key is struck
  again ends there, as a piano key does: MIDI cannot store two overlapping notes of one key
  on one channel, and a reader would pair them differently.

The new track is written with mido (symusic cannot choose a track's channel): it takes the
lowest channel the file does not use, so its program change cannot re-voice the user's parts.
"""

from __future__ import annotations

import functools
import io

import mido
import numpy as np
from symusic import Note, Score, Tempo, TimeSignature, Track

from pianomuse.tokenizer.metre import Metre
from pianomuse.tokenizer.piece import Piece
from pianomuse.tokenizer.remi import PianoTokenizer

NEW_TRACK_NAME = "Piano Muse"
# Ticks before any kept onset: "no kept note on this key after the gap".
NEVER = np.iinfo(np.int64).max // 4
MAX_DELTA = 0x0FFFFFFF  # the largest delta time a MIDI file can store (4 bytes of 7 bits)


def decode_bars(tok: PianoTokenizer, ids: np.ndarray, tpq: int, qpm: float) -> Score:
    """Generated bars (starting with a Bar) as a Score at `tpq` with the tempo `qpm` and the
    metres their tokens carry; a note still sounding when its key is struck again ends there."""
    score = tok.decode(ids).resample(tpq, min_dur=1)
    score.tempos = [Tempo(0, qpm)]
    for track in score.tracks:
        track.notes = _no_overlaps(track.notes.numpy(), score.ttype)
    return score


def _no_overlaps(n: dict[str, np.ndarray], ttype: object) -> object:
    """Notes with each one cut at the next onset of its key (sorted by time, then pitch)."""
    order = np.lexsort((n["time"], n["pitch"]))  # by pitch, then time
    t, d, p = n["time"][order], n["duration"][order].copy(), n["pitch"][order]
    same_next = np.flatnonzero(p[:-1] == p[1:])
    d[same_next] = np.minimum(d[same_next], t[same_next + 1] - t[same_next])
    keep = d > 0  # a key struck twice at one onset keeps one note
    back = np.lexsort((p[keep], t[keep]))
    cols = (t[keep][back], d[keep][back], p[keep][back], n["velocity"][order][keep][back])
    return Note.from_numpy(*cols, ttype)


def seam_keys(piece: Piece, start: int, end: int | None) -> tuple[np.ndarray, np.ndarray]:
    """What the kept music holds around new music placed at ticks [start, end) (end None:
    a continuation, nothing after it). Per MIDI pitch (128,): the tick until which a kept
    note started before `start` still holds the key, and the first kept onset at or after
    `end` (`NEVER` when none)."""
    held = np.full(128, start, dtype=np.int64)
    nxt = np.full(128, NEVER, dtype=np.int64)
    for track in piece.source.tracks:
        if track.is_drum or not len(track.notes):
            continue
        n = track.notes.numpy()
        t, e, p = (
            n["time"].astype(np.int64),
            (n["time"] + n["duration"]).astype(np.int64),
            n["pitch"],
        )
        before = (t < start) & (e > start)
        np.maximum.at(held, p[before], e[before])
        if end is not None:
            after = t >= end
            np.minimum.at(nxt, p[after], t[after])
    return held, nxt


def continue_piece(piece: Piece, new: Score, at_tick: int, metre: Metre) -> bytes:
    """The user's file with the tracks of `new` (time 0 = `at_tick`) added. `metre` is the
    one the tokens read at the seam: a time signature is written wherever the new bars' metre
    differs from the one in force before them; chords of the new bars become markers."""
    ts = [(int(t.time), (int(t.numerator), int(t.denominator))) for t in new.time_signatures]
    changes, current = [], metre
    for t, m in sorted(ts):
        if m != current:
            changes.append((at_tick + t, m))
            current = m
    layout = _smf_layout(piece.midi)
    if layout is None:  # not a plain SMF we can extend in place: write the parsed piece
        return _with_tracks(piece.source, new, at_tick, None, changes)
    header, chunks = layout
    channels = _free_channels(piece.midi)
    added = [
        _track_chunk(
            track,
            _name(track, new),
            at_tick,
            piece.tpq,
            channels[i] if i < len(channels) else None,
            metre_changes=changes if i == 0 else [],
            markers=new.markers if i == 0 else [],
        )
        for i, track in enumerate(new.tracks)
    ]
    fmt, ntrks = int.from_bytes(header[8:10], "big"), int.from_bytes(header[10:12], "big")
    head = header[:8] + max(fmt, 1).to_bytes(2, "big") + (ntrks + len(added)).to_bytes(2, "big")
    return head + header[12:] + b"".join(chunks) + b"".join(added)


def replace_span(
    piece: Piece, new: Score, start: int, end: int, tracks: set[int] | None = None
) -> bytes:
    """The user's piece with the notes starting in [start, end) removed from its `tracks`
    (indices; default every track) and the tracks of `new` (time 0 = `start`) added."""
    return _with_tracks(piece.source, new, start, (start, end), [], tracks)


def keep_tracks(score: Score, names: set[str]) -> Score:
    """`score` with only its tracks named in `names`."""
    out = score.copy()
    out.tracks = [t for t in out.tracks if t.name in names]
    return out


def _name(track: Track, new: Score) -> str:
    """ "Piano Muse", or "Piano Muse Melody" when the new music has parts."""
    return NEW_TRACK_NAME if len(new.tracks) == 1 else f"{NEW_TRACK_NAME} {track.name}"


def _with_tracks(
    source: Score,
    new: Score,
    at_tick: int,
    drop: tuple[int, int] | None,
    metre_changes: list[tuple[int, Metre]],
    tracks: set[int] | None = None,
) -> bytes:
    out = source.copy()
    if drop is not None:
        a, b = drop
        for i, track in enumerate(out.tracks):
            if tracks is None or i in tracks:
                track.notes = track.notes.filter(lambda n: not a <= n.time < b)
    ours = {t.name: t for t in out.tracks if t.name.startswith(NEW_TRACK_NAME)}
    for t in new.tracks:
        notes = t.shift_time(at_tick, inplace=False).notes
        if _name(t, new) in ours:  # new music written into the piece before: one track
            ours[_name(t, new)].notes.extend(notes)
            ours[_name(t, new)].notes.sort()
            continue
        track = Track(name=_name(t, new), program=0, is_drum=False, ttype=out.ttype)
        track.notes = notes
        out.tracks.append(track)
    out.markers.extend(m.shift_time(at_tick) for m in new.markers)
    if metre_changes:
        out.time_signatures.extend(TimeSignature(t, n, d) for t, (n, d) in metre_changes)
        out.time_signatures.sort()
    return bytes(out.dumps_midi())


def _smf_layout(data: bytes) -> tuple[bytes, list[bytes]] | None:
    """(header chunk, every other chunk) of a standard MIDI file with metrical timing, or
    None for anything else (format 2, SMPTE timing, chunks running past the end)."""
    if data[:4] == b"RIFF":  # RMID: the SMF is the payload of the "data" chunk
        if data[8:12] != b"RMID" or data[12:16] != b"data":
            return None
        data = data[20 : 20 + int.from_bytes(data[16:20], "little")]
    if data[:4] != b"MThd" or len(data) < 14:
        return None
    hlen = int.from_bytes(data[4:8], "big")
    header = data[: 8 + hlen]
    fmt, division = int.from_bytes(data[8:10], "big"), int.from_bytes(data[12:14], "big")
    if hlen < 6 or fmt > 1 or division & 0x8000:
        return None
    chunks, pos = [], 8 + hlen
    while pos < len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        if pos + 8 + size > len(data):
            return None
        chunks.append(data[pos : pos + 8 + size])
        pos += 8 + size
    return header, chunks


@functools.lru_cache(maxsize=16)
def _free_channels(data: bytes) -> tuple[int, ...]:
    """The MIDI channels (not the drum channel 10) that the file does not use, lowest
    first. Kept for the last files: every candidate of one answer extends the same file,
    and reading a song with mido is a noticeable share of `complete`'s time."""
    try:
        used = {
            msg.channel
            for tr in mido.MidiFile(file=io.BytesIO(data), clip=True).tracks
            for msg in tr
            if hasattr(msg, "channel")
        }
    except Exception:  # mido is stricter than symusic about odd files; assume the worst
        used = set(range(16))
    return tuple(c for c in range(16) if c != 9 and c not in used)


def _track_chunk(
    new: Track,
    name: str,
    at_tick: int,
    tpq: int,
    channel: int | None,
    *,
    metre_changes: list[tuple[int, Metre]],
    markers: object,
) -> bytes:
    """One MTrk chunk: the track name, a piano program change on a free `channel` (with no
    free channel: channel 1 and no program change, leaving the file's voices alone), the
    metre changes, chord markers and the notes of `new` shifted by `at_tick` (note-offs
    before note-ons at equal ticks)."""
    head = [mido.MetaMessage("track_name", name=name)]
    if channel is None:
        channel = 0
    else:
        head.append(mido.Message("program_change", channel=channel, program=0))
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = []
    for t, (num, den) in metre_changes:
        events.append((t, 0, mido.MetaMessage("time_signature", numerator=num, denominator=den)))
    for m in markers:
        events.append((int(m.time) + at_tick, 0, mido.MetaMessage("marker", text=m.text)))
    n = new.notes.numpy()
    for on, dur, pitch, vel in zip(
        n["time"], n["duration"], n["pitch"], n["velocity"], strict=True
    ):
        on = int(on) + at_tick
        note_on = mido.Message("note_on", channel=channel, note=int(pitch), velocity=int(vel))
        events.append((on, 2, note_on))
        events.append(
            (on + int(dur), 1, mido.Message("note_off", channel=channel, note=int(pitch)))
        )
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack(head)
    now = 0
    for t, _, msg in events:
        while t - now > MAX_DELTA:  # a delta time is at most 28 bits: step with empty texts
            track.append(mido.MetaMessage("text", text="", time=MAX_DELTA))
            now += MAX_DELTA
        track.append(msg.copy(time=t - now))
        now = t
    buf = io.BytesIO()
    mido.MidiFile(type=1, ticks_per_beat=tpq, tracks=[track]).save(file=buf)
    return buf.getvalue()[14:]  # the MTrk chunk after the 14-byte header
