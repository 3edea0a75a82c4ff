"""Arranging a whole song: one part kept, the other written over any number of bars, in
windows the model learnt to fill (`MAX_MIDDLE_BARS`), each written after the one before it
(the model reads what it wrote), window after window for each candidate."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pianomuse.copilot.result import Candidate, Generation, Span, new_bar_beats
from pianomuse.generate.decode import DecodeStats
from pianomuse.generate.sampling import Sampling
from pianomuse.limits import MAX_GAP_BARS, MAX_MIDDLE_BARS, MAX_SEED
from pianomuse.steering import Steering
from pianomuse.steering.compile import WRITES
from pianomuse.tokenizer import MidiSource, Piece, load_score
from pianomuse.tokenizer.compose import decode_bars, keep_tracks
from pianomuse.tokenizer.remi2 import TRACK_OF_PART

if TYPE_CHECKING:
    from pianomuse.copilot.core import Copilot, Progress


def arrange(
    cp: Copilot,
    midi: MidiSource | Piece,
    first_bar: int,
    last_bar: int,
    *,
    write: str,
    candidates: int,
    sampling: Sampling,
    steering: Steering,
    progress: Progress | None = None,
) -> Generation:
    """Bars first_bar..last_bar (1-based, inclusive) of `midi` with `write` rewritten and the
    other part kept: `Copilot.infill(write=...)` where the span fits one gap, else window by
    window; candidate k draws with seed + k."""
    piece = cp.read(midi, write=write)
    if last_bar - first_bar + 1 <= MAX_GAP_BARS:
        return cp.infill(piece, first_bar, last_bar, candidates=candidates, sampling=sampling,
                         steering=steering, write=write, progress=progress)  # fmt: skip
    if not 1 <= first_bar <= last_bar <= piece.n_bars:
        return cp.infill(piece, first_bar, last_bar, write=write)  # its one-line error
    windows = [(a, min(a + MAX_MIDDLE_BARS - 1, last_bar))
               for a in range(first_bar, last_bar + 1, MAX_MIDDLE_BARS)]  # fmt: skip
    out, stats = [], []
    for k in range(candidates):
        done = k * len(windows)

        def step(share: float, done: int = done) -> None:
            if progress is not None:
                progress((done + share) / (candidates * len(windows)))

        current, tokens, logliks = piece, [], []
        draw = replace(sampling, seed=(sampling.seed + k) % (MAX_SEED + 1))
        for w, (a, b) in enumerate(windows):
            r = cp.infill(current, a, b, candidates=1, sampling=draw, steering=steering,
                          write=write, progress=lambda s, w=w: step(w + s))  # fmt: skip
            c = r.candidates[0]
            tokens.append(c.tokens)
            logliks.append(c.loglik)
            stats.append(r.stats)
            current = cp.read(c.full_midi, name=piece.name, write=write)
        out.append(_whole(cp, piece, current, tokens, float(np.mean(logliks)), k, first_bar, write))
    out.sort(key=lambda c: (-c.loglik, c.index))
    for rank, c in enumerate(out, 1):
        c.rank = rank
    span = Span("arrange", first_bar - 1, last_bar - first_bar + 1,
                int(piece.bar_ticks[first_bar - 1]), int(piece.bar_ticks[last_bar]),
                write=WRITES[write])  # fmt: skip
    context = {"gap": [first_bar, last_bar], "write": write, "windows": len(windows)}
    total = DecodeStats(
        *(sum(getattr(s, f) for s in stats) for f in DecodeStats.__dataclass_fields__)
    )
    return Generation(out, piece, span, context, sampling, total, cp.model_info, steering, cp.tok)


def _whole(
    cp: Copilot,
    piece: Piece,
    arranged: Piece,
    tokens: list[np.ndarray],
    loglik: float,
    index: int,
    first_bar: int,
    write: str,
) -> Candidate:
    """One candidate of the whole span: its windows' tokens as one stream, the new part
    alone, and the arranged file."""
    ids = np.concatenate(tokens)
    start = int(piece.bar_ticks[first_bar - 1])
    new = decode_bars(cp.tok, ids, piece.tpq, piece.qpm_at(start))
    new = keep_tracks(new, {TRACK_OF_PART[WRITES[write]]})
    full_midi: Any = arranged.midi
    return Candidate(0, index, ids, loglik, new, new_bar_beats(cp.tok.structure, ids),
                     load_score(full_midi), full_midi)  # fmt: skip
