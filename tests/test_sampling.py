"""Sampling is a pure function of logits, settings and a generator (numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pianomuse.generate.sampling import Sampling, filter_logits, log_softmax, sample


def test_top_k_top_p_and_the_mask_keep_the_right_tokens():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    kept = lambda s, allowed=None: np.isfinite(filter_logits(logits, s, allowed))[0].tolist()  # noqa: E731
    assert kept(Sampling(top_p=None, top_k=2)) == [True, True, False, False]
    assert kept(Sampling(top_p=0.8)) == [True, True, False, False]  # 0.5 + 0.3 reaches 0.8
    assert kept(Sampling(top_p=0.81)) == [True, True, True, False]
    allowed = np.array([[False, True, True, True]])
    # Renormalised over the allowed tokens: 0.6, 0.3, 0.1.
    assert kept(Sampling(top_p=0.6), allowed) == [False, True, False, False]
    assert kept(Sampling(top_p=0.7), allowed) == [False, True, True, False]
    x = filter_logits(logits, Sampling(temperature=0.5, top_p=None))
    assert np.allclose(x, logits * 2)
    assert np.isfinite(logits).all()  # the caller's logits are left as they were


def test_seeded_sampling_reproduces_and_greedy_takes_the_best():
    logits = np.random.default_rng(0).normal(size=(6, 50)).astype(np.float32)
    s = Sampling(seed=11)
    a = sample(logits, s, s.generator())
    b = sample(logits, s, s.generator())
    assert np.array_equal(a, b) and a.dtype == np.int64 and a.shape == (6,)
    greedy = Sampling(temperature=0)
    assert np.array_equal(sample(logits, greedy, greedy.generator()), logits.argmax(-1))
    # Frequencies follow the filtered distribution; a forbidden token is never drawn.
    one = np.log(np.tile([[0.7, 0.2, 0.1, 0.0]], (20000, 1)))
    allowed = np.tile([[True, True, True, False]], (20000, 1))
    draws = sample(one, Sampling(top_p=None), Sampling(seed=3).generator(), allowed)
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert np.abs(freq - [0.7, 0.2, 0.1, 0.0]).max() < 0.015 and freq[3] == 0
    lp = log_softmax(one[:1])
    assert np.allclose(np.exp(lp), [[0.7, 0.2, 0.1, 0.0]])


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
