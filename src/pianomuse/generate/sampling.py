"""Pure sampling functions: logits in, token ids out, randomness only from a Generator."""

from __future__ import annotations

import torch


def filter_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits [K, V] with disallowed, top-k and nucleus-excluded tokens set to -inf, scaled by
    1/temperature. At least one token always survives (the most likely allowed one)."""
    x = logits.float()
    if allowed is not None:
        x = x.masked_fill(~allowed, float("-inf"))
    if temperature > 0:
        x = x / temperature
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
    generator: torch.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row of logits [K, V] -> [K]; temperature 0 is greedy."""
    x = filter_logits(logits, temperature, top_k, top_p, allowed)
    if temperature <= 0:
        return x.argmax(-1)
    probs = torch.softmax(x, dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
