"""How tokens are drawn: the settings as one object, and pure functions of logits.

Randomness comes only from the `torch.Generator` passed in, so the same settings and seed
give the same tokens. A new sampling control is a field of `Sampling` and a line in
`filter_logits`; the command line and the web API build `Sampling` from their fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pianomuse.errors import FieldError
from pianomuse.limits import MAX_SEED, MAX_TEMPERATURE, MIN_TEMPERATURE


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn; together with the seed, this reproduces a generation exactly."""

    temperature: float = 1.0  # < 1 more conservative, > 1 more adventurous, 0 greedy
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = 0.95  # keep the smallest set of tokens with this much probability
    seed: int = 0  # seeds the torch.Generator

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

    def generator(self) -> torch.Generator:
        """A CPU generator seeded for this generation."""
        return torch.Generator().manual_seed(self.seed)


def filter_logits(
    logits: torch.Tensor, sampling: Sampling, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits [K, V] with disallowed, top-k and nucleus-excluded tokens set to -inf, scaled by
    1/temperature. At least one token always survives (the most likely allowed one)."""
    x = logits.float()
    if allowed is not None:
        x = x.masked_fill(~allowed, float("-inf"))
    if sampling.temperature > 0:
        x = x / sampling.temperature
    top_k, top_p = sampling.top_k, sampling.top_p
    if top_k is not None and 0 < top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        # Drop a token when the tokens before it already reach top_p (keeps the first).
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_x = sorted_x.masked_fill(drop, float("-inf"))
        x = torch.full_like(x, float("-inf")).scatter(-1, order, sorted_x)
    return x


def sample(
    logits: torch.Tensor,
    sampling: Sampling,
    generator: torch.Generator,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row of logits [K, V] -> [K]; temperature 0 is greedy."""
    x = filter_logits(logits, sampling, allowed)
    if sampling.temperature <= 0:
        return x.argmax(-1)
    probs = torch.softmax(x, dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
