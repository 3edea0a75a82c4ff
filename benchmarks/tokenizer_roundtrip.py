"""Alignment and tokenizer round trip over a POP909-layout folder.

Prints, over every song: the share of onsets on the 16th-note grid before and after beat
alignment; the share of all notes (every part) whose part, pitch, onset and duration survive
MIDI -> tokens -> MIDI within a grid step, and whose velocity lands in the right bin; tokens
per song; and, on the songs with a triplet feel (more than --triplet-share of their onsets on
triplet positions off the 16th grid), the share of onsets kept exactly (within 1/48 beat).

    uv run python benchmarks/tokenizer_roundtrip.py PATH/TO/pop909 [--version 2] [--grid 24]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pianomuse.data.files import beat_file_for, chord_file_for, find_midi_files
from pianomuse.harmony import read_chord_file
from pianomuse.tokenizer import (
    PianoTokenizer,
    PianoTokenizerV2,
    Survival,
    TokenizerSettingsV2,
    align_to_beats,
    load_score,
    notes_in_beats,
    onset_grid_share,
    read_beats,
    round_trip,
    triplet_share,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--version", type=int, default=2, choices=(1, 2))
    ap.add_argument(
        "--grid",
        default=",".join(str(g) for g in TokenizerSettingsV2().grid),
        help="version 2: beat subdivisions (union); default: the shipped tokenizer's",
    )
    ap.add_argument("--triplet-share", type=float, default=0.05)
    args = ap.parse_args()
    if args.version == 1:
        tok = PianoTokenizer()
    else:
        grid = tuple(int(g) for g in args.grid.split(","))
        tok = PianoTokenizerV2(TokenizerSettingsV2(grid=grid))
    files = find_midi_files(args.data)[: args.limit]
    before, after, tokens = [], [], []
    total, triplets = Survival(0, 0, 0, 0, 0), Survival(0, 0, 0, 0, 0)
    n_triplet = 0
    for f in files:
        raw = load_score(f)
        before.append(onset_grid_share(raw))
        beats, chords = beat_file_for(f), chord_file_for(f)
        annotated = read_chord_file(chords) if chords else None
        aligned = align_to_beats(raw, read_beats(beats), chords=annotated) if beats else raw
        after.append(onset_grid_share(aligned))
        tokens.append(len(tok.encode(aligned)))
        got = round_trip(tok, aligned)
        total = total + got
        if triplet_share(notes_in_beats(aligned)) > args.triplet_share:
            triplets, n_triplet = triplets + got, n_triplet + 1
    n, kept, distinct = total.notes, total.kept, total.distinct
    med, mean = np.median, np.mean
    rows = [
        ("tokenizer", f"v{tok.version} {tok.hash}, {tok.settings.positions_per_beat}/beat"),
        ("songs", f"{len(files)}"),
        ("16th-grid onsets before align", f"median {med(before):.1%}, mean {mean(before):.1%}"),
        ("16th-grid onsets after align", f"median {med(after):.1%}, mean {mean(after):.1%}"),
        ("notes (every part)", f"{n}"),
        ("distinct (onset, pitch, part)", f"{distinct} ({distinct / n:.2%})"),
        ("part+pitch+onset+duration kept", f"{kept / n:.2%} of all notes"),
        ("velocity in the right bin", f"{total.velocity_ok / n:.2%} of all notes"),
        ("onset exact (within 1/48 beat)", f"{total.exact / n:.2%} of all notes"),
        ("tokens", f"{sum(tokens)} total, {np.mean(tokens):.0f} per song"),
    ]
    if n_triplet:
        rows.append(
            (
                f"triplet-feel songs ({n_triplet})",
                f"onsets exact {triplets.exact / triplets.notes:.2%}, "
                f"kept {triplets.kept / triplets.notes:.2%}",
            )
        )
    for name, value in rows:
        print(f"{name:<32} {value}")


if __name__ == "__main__":
    main()
