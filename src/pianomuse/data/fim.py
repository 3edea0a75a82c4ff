"""Fill-in-the-middle samples: the music after a gap is shown before the gap itself.

Layout (suffix first, so that a recurrent model reads the prefix right before writing the
middle, and the middle's first bar follows the prefix's last bar as in plain music):

    FIM_Suffix  <suffix bars, with their header>
    FIM_Prefix  <prefix bars, with their header>
    FIM_Middle  <middle bars>  FIM_End

Every part is cut at bar lines. The suffix and prefix start with `Bar TimeSig Position_0
Tempo` (the header in force), the middle with `Bar TimeSig` (its tempo is the prefix's). The
prefix or the suffix may be empty (a gap at the start or at the end of a piece). The middle
is at most `MAX_MIDDLE_BARS` bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianomuse.limits import MAX_MIDDLE_BARS
from pianomuse.tokenizer import Structure

# Tokens the layout adds to a window: four markers and a second header (Bar TimeSig
# Position_0 Tempo), plus a little slack for the header inserted at the suffix.
FIM_OVERHEAD = 10


@dataclass(frozen=True)
class FimMarkers:
    """Token ids of the four markers."""

    suffix: int
    prefix: int
    middle: int
    end: int

    @classmethod
    def of(cls, structure: Structure) -> FimMarkers:
        i = structure.id
        return cls(i["FIM_Suffix"], i["FIM_Prefix"], i["FIM_Middle"], i["FIM_End"])


def arrange(
    structure: Structure,
    prefix: np.ndarray,
    middle: np.ndarray,
    suffix: np.ndarray,
    m: FimMarkers,
) -> tuple[np.ndarray, int]:
    """The FIM sequence of three self-contained parts; returns it and the index of the
    first middle token (after FIM_Middle)."""
    head = np.concatenate([[m.suffix], suffix, [m.prefix], prefix, [m.middle]]).astype(np.int64)
    seq = np.concatenate([head, middle, [m.end]]).astype(np.int64)
    return seq, len(head)


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
    return arrange(structure, prefix, middle, suffix, m)
