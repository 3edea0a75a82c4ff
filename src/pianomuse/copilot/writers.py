"""Output formats of a generation: one registry that the command line and the web API share.

A writer turns (generation, candidate) into the bytes of one file named
`<stem>_<rank><suffix>`. A new format is one more entry in `WRITERS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pianomuse.atomic import write_files_atomic
from pianomuse.copilot.result import Candidate, Generation, notes_outside
from pianomuse.render import CONTEXT_COLOUR, NEW_COLOUR, piano_roll_png
from pianomuse.tokenizer import midi_bytes, notes_in_beats


@dataclass(frozen=True)
class Writer:
    """One output file per candidate."""

    suffix: str  # the file name after "<stem>_<rank>"
    render: Callable[[Generation, Candidate], bytes]
    what: str  # one line for help texts


def _roll(g: Generation, c: Candidate) -> bytes:
    """Piano roll of the context bars, the new music (highlighted) and, for an infill, the
    suffix bars the model read after the gap."""
    tpq = g.piece.tpq
    ticks = g.bar_ticks(c)
    first = g.context.get("first_bar", 1) - 1  # a sketch has no context bars
    last = g.context.get("suffix_last_bar", g.span.first_bar + len(c.new_beats) - 1)
    start, new_end = g.span.start_tick, g.end_tick(c)
    view = (int(ticks[first]), max(int(ticks[min(last, len(ticks) - 1)]), new_end))
    kept = notes_outside(g.piece, start, new_end)
    shown = (kept["onset"] >= view[0] / tpq) & (kept["onset"] < view[1] / tpq)
    new = notes_in_beats(c.new)
    new["onset"] = new["onset"] + start / tpq
    lines = [t / tpq for t in ticks if view[0] <= t <= view[1]]
    label = g.span.kind
    return piano_roll_png(
        [
            ({k: v[shown] for k, v in kept.items()}, CONTEXT_COLOUR, "kept"),
            (new, NEW_COLOUR, label),
        ],
        lines,
        title=f"{label} {c.rank}: mean log-likelihood {c.loglik:.3f}",
        highlight=(start / tpq, new_end / tpq),
        bar_numbers_from=first + 1,
    )


WRITERS: dict[str, Writer] = {
    "whole": Writer(".mid", lambda g, c: c.full_midi, "the whole piece with the new music"),
    "new": Writer("_continuation.mid", lambda g, c: midi_bytes(c.new), "the new bars alone"),
    "roll": Writer(".png", _roll, "a piano roll with the new bars highlighted"),
    "sidecar": Writer(
        ".json",
        lambda g, c: json.dumps(g.sidecar(c), indent=1).encode(),
        "how it was made (JSON)",
    ),
}


def write(g: Generation, out_dir: str | os.PathLike, stem: str = "candidate") -> list[list[Path]]:
    """Write every candidate's files into `out_dir`, all or nothing (a failure leaves no new
    file behind). Returns each candidate's paths, best first, in `WRITERS` order."""
    files = {
        f"{stem}_{c.rank}{w.suffix}": w.render(g, c)
        for c in sorted(g.candidates, key=lambda c: c.rank)
        for w in WRITERS.values()
    }
    paths = write_files_atomic(out_dir, files)
    n = len(WRITERS)
    return [paths[i : i + n] for i in range(0, len(paths), n)]
