"""Alignment and tokenizer round trip over a POP909-layout folder.

Prints, over every song: the share of onsets on the 16th-note grid before and after beat
alignment, and the share of notes whose onset, pitch and duration survive MIDI -> tokens ->
MIDI within the quantisation step, and whose velocity lands in the right bin.

    uv run python benchmarks/tokenizer_roundtrip.py PATH/TO/pop909 [--limit N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pianomuse.data.files import beat_file_for, find_midi_files
from pianomuse.tokenizer import (
    PianoTokenizer,
    Survival,
    align_to_beats,
    load_score,
    onset_grid_share,
    read_beats,
    round_trip,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    tok = PianoTokenizer()
    files = find_midi_files(args.data)[: args.limit]
    before, after, tokens = [], [], []
    total = Survival(0, 0, 0, 0)
    for f in files:
        raw = load_score(f)
        before.append(onset_grid_share(raw))
        beats = beat_file_for(f)
        aligned = align_to_beats(raw, read_beats(beats)) if beats else raw
        after.append(onset_grid_share(aligned))
        tokens.append(len(tok.encode(aligned)))
        total = total + round_trip(tok, aligned)
    n, kept, distinct = total.notes, total.kept, total.distinct
    med, mean = np.median, np.mean
    rows = [
        ("songs", f"{len(files)}"),
        ("16th-grid onsets before align", f"median {med(before):.1%}, mean {mean(before):.1%}"),
        ("16th-grid onsets after align", f"median {med(after):.1%}, mean {mean(after):.1%}"),
        ("notes", f"{n}"),
        ("distinct (onset, pitch) notes", f"{distinct} ({distinct / n:.2%})"),
        ("onset+pitch+duration survive", f"{kept / n:.2%} all, {kept / distinct:.2%} distinct"),
        ("velocity in the right bin", f"{total.velocity_ok / kept:.2%} of survivors"),
        ("tokens", f"{sum(tokens)} total, {np.mean(tokens):.0f} per song"),
    ]
    for name, value in rows:
        print(f"{name:<32} {value}")


if __name__ == "__main__":
    main()
