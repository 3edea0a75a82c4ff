"""Piano-roll pictures of a piece and what was generated into it (matplotlib, PNG)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
CONTEXT_COLOUR = "#4a6fa5"
NEW_COLOUR = "#e07a1f"


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific name (60 -> C4)."""
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


def piano_roll_png(
    parts: Sequence[tuple[dict[str, np.ndarray], str, str]],
    bar_lines: Sequence[float],
    title: str = "",
    highlight: tuple[float, float] | None = None,
    bar_numbers_from: int = 1,
) -> bytes:
    """A PNG of note rectangles. `parts` are (notes in beats, colour, label); `bar_lines` in
    beats; `highlight` shades a span of beats (the generated bars)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    onsets = np.concatenate([p[0]["onset"] for p in parts if len(p[0]["onset"])] or [np.zeros(1)])
    ends = np.concatenate(
        [p[0]["onset"] + p[0]["duration"] for p in parts if len(p[0]["onset"])] or [np.ones(1)]
    )
    pitches = np.concatenate(
        [p[0]["pitch"] for p in parts if len(p[0]["pitch"])] or [np.array([60])]
    )
    x0 = float(min(onsets.min(), min(bar_lines, default=onsets.min())))
    x1 = float(max(ends.max(), max(bar_lines, default=0)))
    lo, hi = int(pitches.min()) - 2, int(pitches.max()) + 2
    width = min(max(8.0, (x1 - x0) * 0.12), 40.0)
    fig, ax = plt.subplots(figsize=(width, 5), dpi=100)
    if highlight is not None:
        ax.axvspan(*highlight, color=NEW_COLOUR, alpha=0.08, lw=0)
    for notes, colour, label in parts:
        polys = [
            [(o, p - 0.4), (o + d, p - 0.4), (o + d, p + 0.4), (o, p + 0.4)]
            for o, d, p in zip(notes["onset"], notes["duration"], notes["pitch"], strict=True)
        ]
        ax.add_collection(PolyCollection(polys, facecolors=colour, edgecolors="none", label=label))
    for i, b in enumerate(bar_lines):
        ax.axvline(b, color="#888888", lw=0.6, alpha=0.6)
        ax.text(
            b + 0.05, hi - 0.5, str(bar_numbers_from + i), fontsize=7, color="#555555", va="top"
        )
    c_pitches = [p for p in range(lo, hi + 1) if p % 12 == 0]
    ax.set_yticks(c_pitches, [note_name(p) for p in c_pitches])
    ax.set_ylim(lo, hi)
    ax.set_xlim(x0, x1)
    ax.set_xlabel("beats")
    ax.set_ylabel("pitch")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def curve_png(x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str) -> bytes:
    """A PNG of one curve (a tuning's held-out bits against minutes)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(x, y, marker="o", ms=3, color=NEW_COLOUR)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
