"""The piano roll: every note drawn where it lies, in its part's colour; the new bars shaded."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pianomuse.render import CONTEXT_COLOUR, NEW_COLOUR, _rgb, piano_roll_png


def test_every_note_is_drawn_in_its_colour_at_its_place():
    kept = {"onset": np.array([0.0, 1.0, 2.5]), "duration": np.array([1.0, 0.5, 1.5]),
            "pitch": np.array([48, 60, 72])}  # fmt: skip
    new = {"onset": np.array([4.0, 6.0]), "duration": np.array([2.0, 1.0]),
           "pitch": np.array([55, 67])}  # fmt: skip
    png = piano_roll_png([(kept, CONTEXT_COLOUR, "kept"), (new, NEW_COLOUR, "new")], [0, 4, 8],
                         title="t", highlight=(4.0, 8.0))  # fmt: skip
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    # The plot's frame: the rows and columns that are mostly its grey.
    frame = np.all(img == (120, 120, 120), axis=2)
    rows = np.flatnonzero(frame.sum(axis=1) > img.shape[1] / 2)
    cols = np.flatnonzero(frame.sum(axis=0) > img.shape[0] / 2)
    top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
    lo, hi = 48 - 2, 72 + 2

    def at(beat: float, pitch: float) -> tuple[int, ...]:
        x = left + (beat - 0.0) / 8.0 * (right - left)
        y = top + (hi - pitch) / (hi - lo) * (bottom - top)
        return tuple(img[int(round(y)), int(round(x))])

    for notes, colour in ((kept, CONTEXT_COLOUR), (new, NEW_COLOUR)):
        for o, d, p in zip(notes["onset"], notes["duration"], notes["pitch"], strict=True):
            assert at(o + d / 2, p) == _rgb(colour), (o, p)
    assert at(5.0, 62) == _rgb(NEW_COLOUR, 0.08)  # the shaded new bars, between notes
    assert at(2.0, 62) == (255, 255, 255)  # the context, between notes
