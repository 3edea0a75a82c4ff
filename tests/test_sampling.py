"""Sampling is a pure function of logits, settings and a generator."""

from __future__ import annotations

import math

import pytest
import torch

from pianomuse.generate.sampling import Sampling, filter_logits, sample


def test_top_k_top_p_and_the_mask_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda s, allowed=None: torch.isfinite(filter_logits(logits, s, allowed))[0].tolist()  # noqa: E731
    assert kept(Sampling(top_p=None, top_k=2)) == [True, True, False, False]
    assert kept(Sampling(top_p=0.8)) == [True, True, False, False]  # 0.5 + 0.3 reaches 0.8
    assert kept(Sampling(top_p=0.81)) == [True, True, True, False]
    allowed = torch.tensor([[False, True, True, True]])
    # Renormalised over the allowed tokens: 0.6, 0.3, 0.1.
    assert kept(Sampling(top_p=0.6), allowed) == [False, True, False, False]
    assert kept(Sampling(top_p=0.7), allowed) == [False, True, True, False]
    x = filter_logits(logits, Sampling(temperature=0.5, top_p=None))
    assert torch.allclose(x, logits * 2)


def test_seeded_sampling_reproduces_and_greedy_takes_the_best():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    s = Sampling(seed=11)
    a = sample(logits, s, s.generator())
    b = sample(logits, s, s.generator())
    assert torch.equal(a, b)
    greedy = Sampling(temperature=0)
    assert torch.equal(sample(logits, greedy, greedy.generator()), logits.argmax(-1))
    # Frequencies follow the filtered distribution.
    one = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(4000, -1)
    draws = sample(one, Sampling(top_p=None), Sampling(seed=3).generator())
    assert abs((draws == 0).float().mean().item() - 0.7) < 0.03


@pytest.mark.parametrize(
    "bad",
    [
        dict(temperature=-1),
        dict(temperature=math.nan),
        dict(top_k=0),
        dict(top_p=0),
        dict(top_p=1.5),
        dict(seed=-1),
        dict(seed=2**64),
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        Sampling(**bad)
