"""Validation: loss, perplexity and bits per token of a model on token windows."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from pianomuse.data.samples import SampleStream, collate


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for (the model keeps its WKV state and decay in fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def masked_loss_sum(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Sum of next-token cross-entropies (nats) where mask is 1; logits (B, T, V)."""
    B, T, V = logits.shape
    ce = F.cross_entropy(logits.float().reshape(B * T, V), targets.reshape(B * T), reduction="none")
    return (ce * mask.reshape(B * T)).sum()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    stream: SampleStream,
    batch_size: int,
    max_batches: int | None,
    device: torch.device,
    precision: str = "fp32",
) -> dict[str, float]:
    """Mean loss over the first windows of epoch 0 (a fixed set, comparable across runs)."""
    was_training = model.training
    model.eval()
    items = len(stream.items(0))
    n = items if max_batches is None else min(items, max_batches * batch_size)
    total, tokens = 0.0, 0.0
    for start in range(0, n, batch_size):
        batch = collate(
            [stream.sample(0, i) for i in range(start, min(start + batch_size, n))],
            stream.shards.tokenizer.pad_id,
        )
        idx, tgt, mask = (batch[k].to(device) for k in ("idx", "targets", "mask"))
        with autocast(device, precision):
            logits = model(idx)
        total += float(masked_loss_sum(logits, tgt, mask))
        tokens += float(mask.sum())
    model.train(was_training)
    loss = total / max(tokens, 1.0)
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 50.0)),
        "bpt": loss / math.log(2),
        "tokens": tokens,
    }
