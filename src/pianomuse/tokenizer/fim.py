"""The fill-in-the-middle layout: the music after a gap is shown before the gap itself,
so that a recurrent model reads the prefix right before writing the middle, and the
middle's first bar follows the prefix's last bar as in plain music:

    FIM_Suffix  <suffix bars, with their header>
    FIM_Prefix  <prefix bars, with their header>
    FIM_Middle  <middle bars>  FIM_End

Training samples (`pianomuse.data.fim`) and the copilot's infill prompts are both laid out
by `fim_sequence`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianomuse.tokenizer.structure import Structure


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


def fim_sequence(
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
