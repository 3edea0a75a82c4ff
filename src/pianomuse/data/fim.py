"""Fill-in-the-middle training samples, in the layout of `pianomuse.tokenizer.fim`.

Every part is cut at bar lines. The suffix and prefix start with `Bar TimeSig Position_0
Tempo` (the header in force), the middle with `Bar TimeSig` (its tempo is the prefix's). The
prefix or the suffix may be empty (a gap at the start or at the end of a piece). The middle
is at most `MAX_MIDDLE_BARS` bars.

Part infilling (tokenizer v2) uses the same layout: the middle bars show one part's block
first (given) and the other part's after it (written), so the model learns to accompany a
melody, or to write a melody over an accompaniment, with the music before and after.
"""

from __future__ import annotations

import numpy as np

from pianomuse.limits import MAX_MIDDLE_BARS
from pianomuse.tokenizer import Kind, Structure
from pianomuse.tokenizer.fim import FimMarkers, fim_sequence

# Tokens the layout adds to a window: four markers and a second header (Bar TimeSig
# Position_0 Tempo), plus a little slack for the header inserted at the suffix.
FIM_OVERHEAD = 10


def fim_from_window(
    structure: Structure, window: np.ndarray, rng: np.random.Generator, m: FimMarkers
) -> tuple[np.ndarray, int] | None:
    """A random FIM rearrangement of a header-prefixed window (None if it has one bar)."""
    bars = structure.bar_starts(window)
    n = len(bars)
    if n < 2:
        return None
    a = int(rng.integers(0, n))  # first middle bar
    b = int(min(n, a + rng.integers(1, MAX_MIDDLE_BARS + 1)))  # end (exclusive)
    edges = np.append(bars, len(window))
    prefix = window[: edges[a]]
    middle = window[edges[a] : edges[b]]
    suffix = structure.with_header(window, int(edges[b])) if b < n else window[:0]
    return fim_sequence(structure, prefix, middle, suffix, m)


def part_infill_from_window(
    structure: Structure, window: np.ndarray, rng: np.random.Generator, m: FimMarkers
) -> tuple[np.ndarray, np.ndarray] | None:
    """A part-infilling sample of a window with parts: bars [a, b) become the middle of a
    fill-in-the-middle layout where each bar shows the given part's block first and then the
    other part's, which alone carries loss (its tempo and chord tokens aside: given too). The
    given part is the melody or the accompaniment, at random; the window's last bar (which
    its cut may have shortened) is always in the suffix. None if the window has no parts or
    fewer than three bars. Returns (ids, loss mask)."""
    bars = structure.bar_starts(window)
    n = len(bars) - 1  # the window's last bar may be cut short: never part of the middle
    k = structure.kinds(window)
    if n < 2 or not (k == Kind.PART).any():
        return None
    a = int(rng.integers(0, n))
    b = int(min(n, a + rng.integers(1, MAX_MIDDLE_BARS + 1)))
    given = int(rng.integers(0, 2))  # 0: the melody is given, 1: the accompaniment
    edges = np.append(bars, len(window))
    middle, target = [], []  # the middle bars' tokens, and which of them carry loss
    for j in range(a, b):
        head, parts = structure.blocks(window[edges[j] : edges[j + 1]])
        parts.sort(key=lambda blk: structure.value[blk[0]] != given)  # the given part first
        middle.append(head)
        target.append(np.zeros(len(head), dtype=bool))
        for blk in parts:
            middle.append(blk)
            writes = structure.value[blk[0]] != given
            kinds = structure.kinds(blk)
            target.append(writes & ~np.isin(kinds, (Kind.TEMPO, Kind.CHORD, Kind.BASS)))
    prefix = window[: edges[a]]
    suffix = structure.with_header(window, int(edges[b]))
    ids, at = fim_sequence(structure, prefix, np.concatenate(middle), suffix, m)
    mask = np.zeros(len(ids), dtype=bool)
    mask[at : len(ids) - 1] = np.concatenate(target)
    mask[-1] = True  # FIM_End: the gap is done
    return ids, mask
