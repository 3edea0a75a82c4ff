"""Audio of POP909 openings: how fast the bundled piano renders them and whether their notes
are heard where they are written.

For each song's first --bars bars (4/4 bars of the file's own beats; the sustain pedal cut
at the end): the seconds of sound, the seconds `pianomuse.audio.render` takes (synthesis on
the bundled grand piano), the WAV and MP3 encodings' seconds, and the note onsets found in
the sound by the test suite's spectral-flux detector (tests/onsets.py): the share of the
notes' distinct onsets found within 50 ms (recall) and of the onsets found that are notes
(precision). The real-time factor is render seconds over sound seconds (below 1: faster
than the music plays).

    uv run python benchmarks/audio_render.py PATH/TO/pop909 [--bars 8] [--songs 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pianomuse.audio import SAMPLE_RATE, encode, render
from pianomuse.data.files import find_midi_files
from pianomuse.tokenizer import cut_score, load_score, midi_bytes, notes_in_beats, seconds_at

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from onsets import onsets, precision, recall  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--songs", type=int, default=50)
    args = ap.parse_args()
    render(midi_bytes(cut_score(load_score(find_midi_files(args.data)[0]), 480)))  # warm up
    rows = []
    for f in find_midi_files(args.data)[: args.songs]:
        score = load_score(f)
        score = cut_score(score, score.tpq * 4 * args.bars)
        midi = midi_bytes(score)
        t0 = time.perf_counter()
        x = render(midi)
        t1 = time.perf_counter()
        encode(x, "wav")
        t2 = time.perf_counter()
        encode(x, "mp3")
        t3 = time.perf_counter()
        n = notes_in_beats(score)
        notes_s, found = seconds_at(score, n["onset"]), onsets(x, SAMPLE_RATE)
        rows.append((len(x) / SAMPLE_RATE, t1 - t0, t2 - t1, t3 - t2,
                     recall(notes_s, found), precision(notes_s, found)))  # fmt: skip
    a = np.array(rows)
    print(f"{len(rows)} songs, first {args.bars} bars each, {SAMPLE_RATE} Hz stereo")
    cols = ["sound s", "render s", "wav s", "mp3 s", "recall", "precision"]
    print(f"{'':<8}" + "".join(f"{c:>11}" for c in cols))
    for name, fn in (("mean", np.mean), ("worst", None)):
        if fn is None:
            v = [a[:, 0].max(), a[:, 1].max(), a[:, 2].max(), a[:, 3].max(), a[:, 4].min(),
                 a[:, 5].min()]  # fmt: skip
        else:
            v = fn(a, axis=0)
        print(f"{name:<8}" + "".join(f"{x:>11.3f}" for x in v))
    print(f"real-time factor (render / sound): mean {np.mean(a[:, 1] / a[:, 0]):.4f}, "
          f"worst {np.max(a[:, 1] / a[:, 0]):.4f}")  # fmt: skip
    print(f"songs with recall >= 0.9: {np.mean(a[:, 4] >= 0.9):.1%}")


if __name__ == "__main__":
    main()
