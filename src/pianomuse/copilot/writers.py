"""Output formats of a generation: one registry that the command line and the web API share.

A writer turns (generation, candidate) into the bytes of one file named
`<stem>_<rank><suffix>`. A new format is one more entry in `WRITERS`; the ones marked
`default` are written unless the caller names others (`--outputs`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pianomuse.atomic import write_files_atomic
from pianomuse.copilot.result import Candidate, Generation, notes_outside
from pianomuse.copilot.score import new_score, whole_score
from pianomuse.errors import FieldError
from pianomuse.render import CONTEXT_COLOUR, NEW_COLOUR, piano_roll_png
from pianomuse.tokenizer import midi_bytes, notes_in_beats


@dataclass(frozen=True)
class Writer:
    """One output file per candidate."""

    suffix: str  # the file name after "<stem>_<rank>"
    render: Callable[[Generation, Candidate], bytes]
    what: str  # one line for help texts
    default: bool = True  # written when no outputs are named


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


def _musicxml(make: Callable[[Generation, Candidate], Any]) -> Callable[..., bytes]:
    """A score writer: the MusicXML of `make(g, c)`; what the engraver simplified goes into
    the candidate's notes for its sidecar."""

    def render(g: Generation, c: Candidate) -> bytes:
        from pianomuse.notation import musicxml

        xml, simplified = musicxml(make(g, c))
        c.simplified.extend(s for s in simplified if s not in c.simplified)
        return xml

    return render


def _audio(fmt: str) -> Callable[[Generation, Candidate], bytes]:
    """A sound writer: the whole piece with the new music, played on the bundled piano."""

    def render(g: Generation, c: Candidate) -> bytes:
        from pianomuse.audio import encode, render

        if c.sound is None:  # WAV and MP3 of one candidate: one synthesis
            c.sound = render(c.full_midi)
        return encode(c.sound, fmt)

    return render


WRITERS: dict[str, Writer] = {
    "whole": Writer(".mid", lambda g, c: c.full_midi, "the whole piece with the new music"),
    "new": Writer("_continuation.mid", lambda g, c: midi_bytes(c.new), "the new bars alone"),
    "roll": Writer(".png", _roll, "a piano roll with the new bars highlighted"),
    "score": Writer(
        ".musicxml", _musicxml(whole_score), "the whole piece as a score, seam marked", False
    ),
    "new_score": Writer(
        "_continuation.musicxml", _musicxml(new_score), "the new bars as a score", False
    ),
    "audio": Writer(".wav", _audio("wav"), "the whole piece as sound (WAV)", False),
    "mp3": Writer(".mp3", _audio("mp3"), "the whole piece as sound (MP3)", False),
    # Last: it records what the writers before it did.
    "sidecar": Writer(
        ".json",
        lambda g, c: json.dumps(g.sidecar(c), indent=1).encode(),
        "how it was made (JSON)",
    ),
}
DEFAULT_OUTPUTS = tuple(name for name, w in WRITERS.items() if w.default)


def check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    """The writers named, in `WRITERS` order; an unknown name is one line."""
    unknown = [o for o in outputs if o not in WRITERS]
    if unknown or not outputs:
        names = ", ".join(WRITERS)
        raise FieldError("outputs", f"takes names from {names}, not {','.join(unknown)!r}")
    return tuple(name for name in WRITERS if name in outputs)


def write(
    g: Generation,
    out_dir: str | os.PathLike,
    stem: str = "candidate",
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
) -> list[list[Path]]:
    """Write every candidate's files (the writers named by `outputs`) into `out_dir`, all or
    nothing (a failure leaves no new file behind). Returns each candidate's paths, best
    first, in `WRITERS` order."""
    chosen = [WRITERS[name] for name in check_outputs(outputs)]
    files = {
        f"{stem}_{c.rank}{w.suffix}": w.render(g, c)
        for c in sorted(g.candidates, key=lambda c: c.rank)
        for w in chosen
    }
    paths = write_files_atomic(out_dir, files)
    n = len(chosen)
    return [paths[i : i + n] for i in range(0, len(paths), n)]
