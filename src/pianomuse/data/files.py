"""Finding MIDI files and the beat annotations that may sit beside them."""

from __future__ import annotations

import os
from pathlib import Path

MIDI_SUFFIXES = (".mid", ".midi")
# Annotations that may lie beside a MIDI file: POP909 keeps `beat_midi.txt` and
# `chord_midi.txt` in each song's folder; other collections may use `<song>.beats.txt` and
# `<song>.chords.txt` next to `<song>.mid`.
BEAT_FILE_NAMES = ("{stem}.beats.txt", "beat_midi.txt")
CHORD_FILE_NAMES = ("{stem}.chords.txt", "chord_midi.txt")


def find_midi_files(root: str | os.PathLike) -> list[Path]:
    """Every .mid/.midi file under `root` (recursively), sorted for a stable order."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def annotation_for(midi: Path, names: tuple[str, str]) -> Path | None:
    """The annotation of a MIDI file named by `names` (its own, a folder-wide one), if one
    lies beside it. A folder-wide file is only taken when the MIDI file is the only one in its
    folder, so that one song's annotation is never applied to another."""
    named = midi.parent / names[0].format(stem=midi.stem)
    if named.is_file():
        return named
    shared = midi.parent / names[1]
    if shared.is_file():
        siblings = [p for p in midi.parent.iterdir() if p.suffix.lower() in MIDI_SUFFIXES]
        if len(siblings) == 1:
            return shared
    return None


def beat_file_for(midi: Path) -> Path | None:
    """The beat annotation of a MIDI file, if one lies beside it."""
    return annotation_for(midi, BEAT_FILE_NAMES)


def chord_file_for(midi: Path) -> Path | None:
    """The chord annotation of a MIDI file, if one lies beside it."""
    return annotation_for(midi, CHORD_FILE_NAMES)
