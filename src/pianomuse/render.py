"""Pictures as PNG: piano rolls of a piece and what was generated into it (Pillow), and a
training curve (matplotlib)."""

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


def _rgb(colour: str, alpha: float = 1.0) -> tuple[int, int, int]:
    """ "#rrggbb" over white at `alpha`."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return tuple(round(255 + alpha * (c - 255)) for c in rgb)  # type: ignore[return-value]


def piano_roll_png(
    parts: Sequence[tuple[dict[str, np.ndarray], str, str]],
    bar_lines: Sequence[float],
    title: str = "",
    highlight: tuple[float, float] | None = None,
    bar_numbers_from: int = 1,
) -> bytes:
    """A PNG of note rectangles. `parts` are (notes in beats, colour, label); `bar_lines` in
    beats; `highlight` shades a span of beats (the generated bars).

    Drawn with Pillow rather than matplotlib: importing matplotlib and its first figure took
    longer than writing the music (0.8 s and ~1 s), for rectangles and a few labels."""
    from PIL import Image, ImageDraw, ImageFont

    onsets = np.concatenate([p[0]["onset"] for p in parts if len(p[0]["onset"])] or [np.zeros(1)])
    ends = np.concatenate(
        [p[0]["onset"] + p[0]["duration"] for p in parts if len(p[0]["onset"])] or [np.ones(1)]
    )
    pitches = np.concatenate(
        [p[0]["pitch"] for p in parts if len(p[0]["pitch"])] or [np.array([60])]
    )
    x0 = float(min(onsets.min(), min(bar_lines, default=onsets.min())))
    x1 = float(max(ends.max(), max(bar_lines, default=0), x0 + 1))
    lo, hi = int(pitches.min()) - 2, int(pitches.max()) + 2
    left, top, right, bottom = 48, 30, 12, 34  # margins, px
    plot_w = int(min(max(700, (x1 - x0) * 12), 3900))
    plot_h = 400
    ppb, row = plot_w / (x1 - x0), plot_h / (hi - lo)
    img = Image.new("RGB", (left + plot_w + right, top + plot_h + bottom), "white")
    draw = ImageDraw.Draw(img)
    font, small = ImageFont.load_default(12), ImageFont.load_default(9)

    def x(beat: float) -> float:
        return left + (beat - x0) * ppb

    def y(pitch: float) -> float:  # pitch upwards
        return top + (hi - pitch) * row

    if highlight is not None:
        draw.rectangle([x(highlight[0]), top, x(highlight[1]), top + plot_h],
                       fill=_rgb(NEW_COLOUR, 0.08))  # fmt: skip
    for p in range(lo, hi + 1):
        if p % 12 == 0:  # C lines and names, as a keyboard's landmarks
            draw.line([left, y(p), left + plot_w, y(p)], fill=(236, 236, 236))
            draw.text((left - 4, y(p)), note_name(p), fill=(60, 60, 60), font=small, anchor="rm")
    for i, b in enumerate(bar_lines):
        draw.line([x(b), top, x(b), top + plot_h], fill=(190, 190, 190))
        draw.text((x(b) + 2, top + 1), str(bar_numbers_from + i), fill=(85, 85, 85), font=small)
    for notes, colour, _ in parts:
        fill = _rgb(colour)
        for o, d, p in zip(notes["onset"], notes["duration"], notes["pitch"], strict=True):
            a, b = x(o), max(x(o + d), x(o) + 1)  # a note is at least a pixel wide
            draw.rectangle([a, y(p + 0.4), b, y(p - 0.4)], fill=fill)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(120, 120, 120))
    draw.text((left + plot_w / 2, top / 2), title, fill=(20, 20, 20), font=font, anchor="mm")
    draw.text((left + plot_w / 2, top + plot_h + 18), "beats", fill=(60, 60, 60), font=small,
              anchor="mm")  # fmt: skip
    at = left + plot_w  # the legend, right-aligned under the plot
    for _, colour, label in reversed(parts):
        width = draw.textlength(label, font=small)
        at -= width
        draw.text((at, top + plot_h + 18), label, fill=(40, 40, 40), font=small, anchor="lm")
        draw.rectangle([at - 14, top + plot_h + 13, at - 4, top + plot_h + 23], fill=_rgb(colour))
        at -= 26
    buf = io.BytesIO()
    img.save(buf, format="PNG")
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
