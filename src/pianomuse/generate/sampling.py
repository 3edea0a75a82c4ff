"""How tokens are drawn: the settings as one object, and pure functions of logits, in numpy
(the runtime without torch draws with them too).

Randomness comes only from the `numpy.random.Generator` passed in, so the same settings and
seed give the same tokens. A new sampling control is a field of `Sampling` and a line in
`filter_logits`; the command line and the web API build `Sampling` from their fields.

Letters: K rows (candidates), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianomuse.errors import FieldError
from pianomuse.limits import MAX_SEED, MAX_TEMPERATURE, MIN_TEMPERATURE


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn; together with the seed, this reproduces a generation exactly."""

    temperature: float = 1.0  # < 1 more conservative, > 1 more adventurous, 0 greedy
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = 0.95  # keep the smallest set of tokens with this much probability
    seed: int = 0  # seeds the random generator (numpy's PCG64)

    def __post_init__(self) -> None:
        t = self.temperature
        if not (t == 0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):  # also refuses NaN
            problem = f"must be 0 (greedy) or between {MIN_TEMPERATURE} and {MAX_TEMPERATURE}"
            raise FieldError("temperature", problem)
        if self.top_k is not None and self.top_k < 1:
            raise FieldError("top_k", "must be >= 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise FieldError("top_p", "must be in (0, 1]")
        if not 0 <= self.seed <= MAX_SEED:
            raise FieldError("seed", f"must be in 0..{MAX_SEED}")

    def generator(self) -> np.random.Generator:
        """A generator seeded for this generation."""
        return np.random.default_rng(self.seed)


def _softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [K, V] logits with -inf allowed (each row has a finite entry)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of [K, V] logits, in float64."""
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def filter_logits(
    logits: np.ndarray, sampling: Sampling, allowed: np.ndarray | None = None
) -> np.ndarray:
    """Logits [K, V] with disallowed, top-k and nucleus-excluded tokens set to -inf, scaled by
    1/temperature, in float64. At least one token always survives (the most likely allowed
    one)."""
    x = np.array(logits, dtype=np.float64)  # a copy: the caller's logits stay as they were
    if allowed is not None:
        x[~allowed] = -np.inf
    if sampling.temperature > 0:
        x /= sampling.temperature
    top_k, top_p = sampling.top_k, sampling.top_p
    if top_k is not None and 0 < top_k < x.shape[-1]:
        kth = np.partition(x, -top_k, axis=-1)[..., -top_k:].min(axis=-1, keepdims=True)
        x[x < kth] = -np.inf
    if top_p is not None and 0 < top_p < 1:
        order = np.argsort(-x, axis=-1, kind="stable")  # most likely first
        sorted_x = np.take_along_axis(x, order, axis=-1)
        probs = _softmax(sorted_x)
        # Drop a token when the tokens before it already reach top_p (keeps the first).
        sorted_x[np.cumsum(probs, axis=-1) - probs >= top_p] = -np.inf
        np.put_along_axis(x, order, sorted_x, axis=-1)
    return x


def sample(
    logits: np.ndarray,
    sampling: Sampling,
    generator: np.random.Generator,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """One token per row of logits [K, V] -> [K] int64; temperature 0 is greedy."""
    x = filter_logits(logits, sampling, allowed)
    if sampling.temperature <= 0:
        return x.argmax(axis=-1)
    # Inverse CDF: the first token whose cumulative probability passes a uniform draw scaled
    # to the row's total (so rounding never leaves the draw past the last token). A token of
    # probability 0 adds nothing to the sum, so the strict ">" never picks it.
    cdf = np.cumsum(_softmax(x), axis=-1)  # [K, V]
    u = generator.random(len(x))[:, None] * cdf[:, -1:]
    return (cdf > u).argmax(axis=-1)
