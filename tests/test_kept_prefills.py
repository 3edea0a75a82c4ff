"""Decoding keeps the prefill of recent contexts: asking again after the same context gives
what a new prefill gives, and decoding never changes what is kept."""

from __future__ import annotations

import torch

from model_fixtures import random_model, tiny_config
from pianomuse.generate.decode import KeptPrefills, continue_tokens, kept_prefills
from pianomuse.generate.sampling import Sampling


def _decode(model, ctx, candidates: int, seed: int) -> list[list[int]]:
    conts, _ = continue_tokens(
        model, ctx, candidates=candidates, sampling=Sampling(seed=seed), bar_id=1,
        max_new_tokens=30,
    )  # fmt: skip
    return [c.ids.tolist() for c in conts]


def test_a_kept_prefill_decodes_as_a_new_one_and_is_never_changed():
    model = random_model(tiny_config(vocab_size=40), seed=3)
    ctx = torch.randint(0, 40, (45,), generator=torch.Generator().manual_seed(0)).numpy()
    kept = kept_prefills(model)
    first = _decode(model, ctx, 1, seed=5)  # prefills and keeps
    logits, state = kept.prefill(model, torch.as_tensor(ctx)[None])  # the kept one
    before = (logits.clone(), state.clone())
    for candidates, seed in ((1, 5), (4, 6), (1, 5)):
        _decode(model, ctx, candidates, seed)  # from the kept prefill, stepped in place
    assert torch.equal(logits, before[0])
    for a, b in zip(state.wkv + state.att_shift, before[1].wkv + before[1].att_shift, strict=True):
        assert torch.equal(a, b)
    again = _decode(model, ctx, 1, seed=5)
    assert len(kept._kept) == 1  # one context, prefilled once
    kept.clear()
    fresh = _decode(model, ctx, 1, seed=5)
    assert first == again == fresh and len(first[0]) == 30


def test_the_least_recently_used_context_goes_first_and_new_weights_start_afresh():
    model = random_model(tiny_config(vocab_size=40), seed=4)
    kept = KeptPrefills(size=2)
    calls = []
    real = model.prefill

    def counting(idx, *args, **kw):
        calls.append(idx.shape[1])
        return real(idx, *args, **kw)

    model.prefill = counting
    a, b, c = (torch.arange(n)[None] % 40 for n in (10, 11, 12))
    with torch.inference_mode():
        for idx in (a, b, a, c, a, b):  # c pushes out b (a was used after it), then b again
            kept.prefill(model, idx)
    assert calls == [10, 11, 12, 11]
    first = kept_prefills(model)
    with torch.no_grad():
        model.head.weight.add_(0.1)
    assert kept_prefills(model) is not first
