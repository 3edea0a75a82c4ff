"""What a live session asks the steering compiler for: the bars of an answer, or the next
bar of an accompaniment (`pianomuse.steering.compile.Scene`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pianomuse.steering.compile import WRITES, Scene
from pianomuse.tokenizer import Tokenizer


def answer_scene(tok: Tokenizer, timesig: int, bars: int, ids: list[int], planner: Any) -> Scene:
    """An answer's `bars` bars in metre `timesig` (a token id), after the tokens `ids` (the
    whole jam: chords are planned from it, unless the steering gives them or turns planning
    off)."""
    prompt = np.asarray(ids, dtype=np.int64)
    return Scene(tok, metres=[timesig], bars=bars, prompt=prompt, planner=planner)


def accompany_scene(
    tok: Tokenizer, timesig: int, ids: list[int], sounding: list[int], density: float
) -> Scene:
    """After the tokens `ids`, the next bar's melody (a guess, not kept) over its
    accompaniment that is already sounding (`sounding`: its tokens), then the bar after it,
    whose accompaniment is the new music; "as the context" is `density` notes a bar."""
    return Scene(
        tok,
        metres=[timesig],
        bars=2,
        prompt=np.asarray(ids, dtype=np.int64),
        parts=True,
        write=WRITES["accompaniment"],
        guess_other=True,
        given=[sounding, []],
        given_opens=False,
        plays=1,  # the accompaniment never drops out for a bar
        context_density=density,
    )
