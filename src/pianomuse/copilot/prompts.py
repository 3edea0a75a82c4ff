"""What the model reads before it writes: pure functions over token ids.

Every prompt starts at a bar with the header in force there (time signature, tempo), and
fits the model's context budget in whole bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianomuse.tokenizer import Structure
from pianomuse.tokenizer.fim import FimMarkers, fim_sequence

# Header tokens a cut may insert in front of a bar (Bar TimeSig Position_0 Tempo).
_HEADER = 4


def context_window(
    st: Structure, ids: np.ndarray, end_bar: int, budget: int, context_bars: int | None = None
) -> tuple[np.ndarray, int]:
    """The bars before `end_bar` (0-based) as a prompt: the last `context_bars` bars, or as
    many whole bars as fit in `budget` tokens. Returns the window and its first bar. When one
    bar alone is longer than the budget, the window is that bar's end, cut at a note."""
    bars = st.bar_starts(ids)
    end = int(bars[end_bar]) if end_bar < len(bars) else len(ids)
    first = max(end_bar - context_bars, 0) if context_bars else 0
    # Bars starting more than `budget` tokens before the end cannot fit: skip them at once (a
    # piece may have thousands of bars); the header a cut adds decides the last steps.
    first = max(first, min(int(np.searchsorted(bars, end - budget)), end_bar - 1))
    while True:
        window = st.with_header(ids[:end], int(bars[first]))
        if len(window) <= budget or first >= end_bar - 1:
            break
        first += 1
    if len(window) > budget:  # one bar longer than the budget: keep its end
        cuts = st.safe_cuts(ids[:end])
        start = int(cuts[np.searchsorted(cuts, end - budget + 2 * _HEADER)])
        window = st.with_header(ids[:end], start)
    return window, first


@dataclass(frozen=True)
class FimPrompt:
    """A fill-in-the-middle prompt, up to and with FIM_Middle."""

    ids: np.ndarray  # FIM_Suffix suffix FIM_Prefix prefix FIM_Middle
    first_bar: int  # first prefix bar (0-based)
    suffix_end: int  # bar after the last suffix bar (0-based)
    prefix_tokens: int
    suffix_tokens: int


def fim_prompt(
    st: Structure,
    ids: np.ndarray,
    i: int,
    j: int,
    budget: int,
    *,
    with_suffix: bool = True,
    first: int | None = None,
) -> FimPrompt:
    """The prompt for rewriting bars [i, j) (0-based) of `ids`: the suffix gets up to half
    the budget (whole bars from bar j on), the prefix the rest (whole bars ending at bar i),
    or the bars from `first` on."""
    bars = st.bar_starts(ids)
    n_bars = len(bars)
    edges = np.append(bars, len(ids))
    budget -= 4  # the four markers
    k = j
    if with_suffix:
        while k < n_bars and len(st.with_header(ids[: edges[k + 1]], int(edges[j]))) <= budget // 2:
            k += 1
    suffix = st.with_header(ids[: edges[k]], int(edges[j])) if k > j else ids[:0]
    p = 0 if first is None else first
    while p < i and len(st.with_header(ids[: edges[i]], int(edges[p]))) > budget - len(suffix):
        p += 1
    prefix = st.with_header(ids[: edges[i]], int(edges[p])) if p < i else ids[:0]
    prompt, _ = fim_sequence(st, prefix, ids[:0], suffix, FimMarkers.of(st))
    # The empty middle's FIM_End is dropped: the model writes the middle from here.
    return FimPrompt(prompt[:-1], p, k, len(prefix), len(suffix))


def prevailing_metre(st: Structure, window: np.ndarray) -> int:
    """The TimeSig token id most bars of `window` carry (the latest of equals): the metre a
    continuation keeps, whatever irregular bar the context happens to end on."""
    metres = st.bar_metres(window)
    metres = metres[metres >= 0]
    if len(metres) == 0:
        return st.id["TimeSig_4/4"]
    counts = {int(m): int(np.sum(metres == m)) for m in np.unique(metres)}
    last = {int(m): int(np.flatnonzero(metres == m)[-1]) for m in counts}
    return max(counts, key=lambda m: (counts[m], last[m]))
