"""Continuations judged as music: chord fit, bass fit, material reuse and metre kept, for a
model beside the reference rows (the true continuation, repeating the last bars, another
song), with the model's bits per note and per second of music.

    uv run python benchmarks/harmony_eval.py PATH/TO/pop909 [--model M] [--songs 40]
    uv run --group eval python benchmarks/harmony_eval.py PATH/TO/pop909 --external

--external adds the beat-level chord accuracy of the `smg-metrics` package (MIT; its DP
chord recogniser, as FGG and D3PIA report it) between the new bars and the true ones.

Songs: those `prepare` holds out for validation (content hash, 10 %), or --split train.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pianomuse.bundled import default_model
from pianomuse.copilot import Copilot
from pianomuse.data.prepare import songs_in_split
from pianomuse.evaluation.form import COLUMNS, EXTERNAL, form_report
from pianomuse.tokenizer.live import LiveNote, jam_midi


def _midi(notes: dict, start: float, path: Path) -> Path:
    """Notes (beats) from `start` on as a MIDI file at 120 qpm in 4/4."""
    rows = zip(notes["onset"], notes["duration"], notes["pitch"], notes["velocity"], strict=True)
    played = [LiveNote(float(o) - start, float(d), int(p), int(v)) for o, d, p, v in rows]
    path.write_bytes(jam_midi(played, [], 120.0, (4, 4)))
    return path


def smg_chord_accuracy(new: dict, truth: dict, start: float) -> float | None:
    """smg-metrics' chord accuracy (DP method) of the new bars against the true ones."""
    import tempfile

    from smg_metrics.chord_accuracy import compute_ca

    if len(new["pitch"]) == 0 or len(truth["pitch"]) == 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        got, want = (
            _midi(new, start, Path(tmp) / "new.mid"),
            _midi(truth, start, Path(tmp) / "true.mid"),
        )
        return float(compute_ca(got, want, method="dp"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--songs", type=int, default=40)
    ap.add_argument("--context", type=int, default=12)
    ap.add_argument("--new", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--infill", action="store_true", help="fill the new bars as a gap")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--external", action="store_true", help="smg-metrics chord accuracy too")
    args = ap.parse_args()
    model = args.model or default_model()
    songs = songs_in_split(args.data, args.split)[: args.songs]
    report = form_report(
        Copilot(model),
        songs,
        context=args.context,
        new=args.new,
        candidates=args.candidates,
        infill=args.infill,
        progress=lambda i, n: print(f"\r{i}/{n} songs", end="", flush=True),
        external=smg_chord_accuracy if args.external else None,
    )
    print()
    print(
        f"{model.name}: {report['songs']} {args.split} songs, {report['kind']} of bars "
        f"{args.context + 1}-{args.context + args.new} after bars 1-{args.context}, "
        f"{args.candidates} candidates"
    )
    columns = COLUMNS + ((EXTERNAL,) if args.external else ())
    print(f"{'':<32}" + "".join(f"{c.replace('_', ' '):>16}" for c in columns))
    for row, values in report["rows"].items():
        cells = "".join(f"{'-' if v is None else f'{v:.3f}':>16}" for v in values.values())
        print(f"{row:<32}{cells}")
    if report["bits_per_note"] is not None:
        print(
            f"true continuation under the model: {report['bits_per_note']:.2f} bits per note, "
            f"{report['bits_per_second']:.1f} bits per second"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
