"""The grammar's kept masks are the masks it would compute afresh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pianomuse.generate.grammar import Grammar


@pytest.mark.parametrize("parts", [False, True])
def test_kept_masks_are_the_masks_computed_afresh(tok, parts):
    """Four candidates take random allowed tokens through six bars of changing metre, the
    last steps with the budget spent; at every step each mask equals the one a new grammar
    (nothing kept) computes for the same row."""
    st = tok.structure
    metres = [st.id["TimeSig_4/4"], st.id["TimeSig_3/4"], st.id["TimeSig_4/4"]]
    kept = Grammar(st, 8, metres, 6, parts=parts)
    rows = kept.start(4)
    rng = np.random.default_rng(0)
    looked_up = 0
    for t in range(1500):
        force_close = t >= 1200
        allowed = kept.allowed(rows, force_close=force_close).numpy()
        for r, mask in zip(rows, allowed, strict=True):
            if not r.done:
                fresh = Grammar(st, 8, metres, 6, parts=parts)._base_mask(r, force_close)
                assert np.array_equal(mask, fresh), (t, r)
                looked_up += 1
        kept.advance(rows, torch.tensor([rng.choice(np.flatnonzero(m)) for m in allowed]))
        if all(r.done for r in rows):
            break
    assert all(r.done for r in rows) and max(r.bar for r in rows) == 5
    assert len(kept._base) < looked_up / 2  # most masks were found again, not made
