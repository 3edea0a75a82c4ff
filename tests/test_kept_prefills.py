"""Decoding keeps the prefill of recent contexts: asking again after the same context gives
what a new prefill gives, and decoding never changes what is kept."""

from __future__ import annotations

import numpy as np
import torch

from model_fixtures import random_model, tiny_config
from pianomuse.generate.decode import continue_tokens
from pianomuse.generate.engine import KeptPrefills
from pianomuse.generate.sampling import Sampling
from pianomuse.model.engine import TorchEngine


def _decode(engine, ctx, candidates: int, seed: int) -> list[list[int]]:
    conts, _ = continue_tokens(
        engine, ctx, candidates=candidates, sampling=Sampling(seed=seed), bar_id=1,
        max_new_tokens=30,
    )  # fmt: skip
    return [c.ids.tolist() for c in conts]


def test_a_kept_prefill_decodes_as_a_new_one_and_is_never_changed():
    model = random_model(tiny_config(vocab_size=40), seed=3)
    engine = TorchEngine(model)
    ctx = torch.randint(0, 40, (45,), generator=torch.Generator().manual_seed(0)).numpy()
    first = _decode(engine, ctx, 1, seed=5)  # prefills and keeps
    logits, state = engine.context(ctx)  # the kept one
    before = (logits.copy(), state.clone())
    for candidates, seed in ((1, 5), (4, 6), (1, 5)):
        _decode(engine, ctx, candidates, seed)  # from the kept prefill, stepped in place
    assert np.array_equal(logits, before[0])
    for a, b in zip(state.wkv + state.att_shift, before[1].wkv + before[1].att_shift, strict=True):
        assert torch.equal(a, b)
    again = _decode(TorchEngine(model), ctx, 1, seed=5)  # another engine of the model shares it
    kept = engine.kept()
    assert len(kept) == 1  # one context, prefilled once
    kept.clear()
    fresh = _decode(engine, ctx, 1, seed=5)
    assert first == again == fresh and len(first[0]) == 30


def test_the_least_recently_used_context_goes_first_and_new_weights_start_afresh():
    kept: KeptPrefills[str] = KeptPrefills(size=2)
    calls = []

    def prefill(ids):
        calls.append(len(ids))
        return np.zeros((1, 4)), f"state of {len(ids)}"

    a, b, c = (np.arange(n) % 40 for n in (10, 11, 12))
    for ids in (a, b, a, c, a, b):  # c pushes out b (a was used after it), then b again
        assert kept.get(ids, prefill)[1] == f"state of {len(ids)}"
    assert calls == [10, 11, 12, 11]
    model = random_model(tiny_config(vocab_size=40), seed=4)
    first = TorchEngine(model).kept()
    assert TorchEngine(model).kept() is first
    with torch.no_grad():
        model.head.weight.add_(0.1)
    assert TorchEngine(model).kept() is not first
