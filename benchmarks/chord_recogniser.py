"""How well the chord recogniser agrees with POP909's annotated chords.

    uv run python benchmarks/chord_recogniser.py PATH/TO/pop909 [--songs 800]

Each song is aligned to its beats with its chord annotation; the recogniser reads the notes
alone. Agreement is measured on a 1/4-beat lattice over the annotated time that has a chord
(N excluded): root and quality (the bass aside), root alone, and the bass (the lowest tone).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pianomuse.data.files import beat_file_for, chord_file_for, find_midi_files
from pianomuse.harmony import NO_CHORD, parse_label, read_chord_file, recognise
from pianomuse.tokenizer import align_to_beats, load_score, notes_in_beats, read_beats
from pianomuse.tokenizer.align import CHORD_MARKER


def chord_at(changes: list[tuple[float, object]], t: np.ndarray) -> list:
    """The chord in force at each time of `t` (beats)."""
    starts = np.array([c[0] for c in changes])
    idx = np.searchsorted(starts, t, side="right") - 1
    return [changes[i][1] if i >= 0 else NO_CHORD for i in idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pop909", type=Path)
    ap.add_argument("--songs", type=int, default=800)
    ap.add_argument("--per-bar", type=int, default=2, help="spans recognised per bar")
    args = ap.parse_args()
    same = root = bass = total = 0
    for midi in find_midi_files(args.pop909)[: args.songs]:
        chords = read_chord_file(chord_file_for(midi))
        score = align_to_beats(load_score(midi), read_beats(beat_file_for(midi)), chords=chords)
        tpq = score.tpq
        truth = [
            (m.time / tpq, parse_label(m.text.removeprefix(CHORD_MARKER)))
            for m in score.markers
            if m.text.startswith(CHORD_MARKER)
        ]
        notes = notes_in_beats(score)
        sigs = [(t.time / tpq, 4 * t.numerator / t.denominator) for t in score.time_signatures]
        end = float((notes["onset"] + notes["duration"]).max())
        lines = []
        for i, (t, length) in enumerate(sigs):
            stop = sigs[i + 1][0] if i + 1 < len(sigs) else end + length
            lines.extend(np.arange(t, stop, length).tolist())
        guess = recognise(notes, np.asarray(lines + [lines[-1] + sigs[-1][1]]), args.per_bar)
        t = np.arange(0, end, 0.25)
        a, b = chord_at(truth, t), chord_at(guess, t)
        for x, y in zip(a, b, strict=True):
            if x.root is None:
                continue
            total += 1
            root += x.root == y.root
            same += x.root == y.root and x.quality == y.quality
            bass += x.lowest == y.lowest
    print(f"songs {min(args.songs, 800)}, annotated chord time {total / 4:,.0f} beats")
    print(f"root and quality agree  {same / total:.1%}")
    print(f"root agrees             {root / total:.1%}")
    print(f"bass (lowest tone)      {bass / total:.1%}")


if __name__ == "__main__":
    main()
