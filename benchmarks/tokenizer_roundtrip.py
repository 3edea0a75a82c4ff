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
    align_to_beats,
    load_score,
    notes_in_beats,
    onset_grid_share,
    read_beats,
)


def survival(orig: dict, dec: dict, tok: PianoTokenizer) -> dict[str, int]:
    """Counts of original notes matched in the decoded notes (same pitch, onset and duration
    within one quantisation step) and of those whose velocity is the nearest bin."""
    s = tok.settings
    step = 1.0 / s.positions_per_beat
    vel_bins = np.asarray(tok._remi.velocities)
    by_pitch: dict[int, list[int]] = {}
    for j, p in enumerate(dec["pitch"]):
        by_pitch.setdefault(int(p), []).append(j)
    kept = vel_ok = 0
    used = np.zeros(len(dec["pitch"]), dtype=bool)
    for i, p in enumerate(orig["pitch"]):
        for j in by_pitch.get(int(p), []):
            if used[j] or abs(dec["onset"][j] - orig["onset"][i]) > step:
                continue
            d = orig["duration"][i]
            d_step = step if d <= 4 else 2 * step  # the coarser duration grid beyond 4 beats
            if abs(dec["duration"][j] - d) <= d_step:
                used[j] = True
                kept += 1
                # Right bin = a nearest bin (a velocity halfway between two bins has two).
                dist = np.abs(vel_bins - orig["velocity"][i])
                vel_ok += int(abs(dec["velocity"][j] - orig["velocity"][i]) == dist.min())
                break
    return {"notes": len(orig["pitch"]), "kept": kept, "velocity_ok": vel_ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    tok = PianoTokenizer()
    files = find_midi_files(args.data)[: args.limit]
    before, after, tokens = [], [], []
    totals = {"notes": 0, "kept": 0, "velocity_ok": 0, "distinct": 0}
    for f in files:
        raw = load_score(f)
        before.append(onset_grid_share(raw))
        beats = beat_file_for(f)
        aligned = align_to_beats(raw, read_beats(beats)) if beats else raw
        after.append(onset_grid_share(aligned))
        piano = tok.piano_score(aligned)
        ids = tok.encode(aligned)
        tokens.append(len(ids))
        orig = notes_in_beats(piano)
        keys = {
            (round(o * tok.settings.positions_per_beat), p)
            for o, p in zip(orig["onset"], orig["pitch"], strict=True)
        }
        totals["distinct"] += len(keys)
        for k, v in survival(orig, notes_in_beats(tok.decode(ids)), tok).items():
            totals[k] += v
    n, kept, distinct = totals["notes"], totals["kept"], totals["distinct"]
    rows = [
        ("songs", f"{len(files)}"),
        (
            "16th-grid onsets before align",
            f"median {np.median(before):.1%}, mean {np.mean(before):.1%}",
        ),
        (
            "16th-grid onsets after align",
            f"median {np.median(after):.1%}, mean {np.mean(after):.1%}",
        ),
        ("notes", f"{n}"),
        ("distinct (onset, pitch) notes", f"{distinct} ({distinct / n:.2%})"),
        (
            "onset+pitch+duration survive",
            f"{kept / n:.2%} of all, {kept / distinct:.2%} of distinct",
        ),
        ("velocity in the right bin", f"{totals['velocity_ok'] / kept:.2%} of survivors"),
        ("tokens", f"{sum(tokens)} total, {np.mean(tokens):.0f} per song"),
    ]
    for name, value in rows:
        print(f"{name:<32} {value}")


if __name__ == "__main__":
    main()
