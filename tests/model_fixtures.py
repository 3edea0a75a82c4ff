"""Small RWKV-7 models with non-trivial weights, shared by the model tests."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pianomuse.model import RWKV7, RWKV7Config


def tiny_config(**overrides) -> RWKV7Config:
    """2 layers, width 64, head size 32 (default chunk 32: T = 37 exercises the padding)."""
    values = dict(vocab_size=40, n_layer=2, n_embd=64, head_size=32)
    values.update(overrides)
    return RWKV7Config(**values)


def random_model(config: RWKV7Config, seed: int = 0, scale: float = 0.1) -> RWKV7:
    """Official init plus noise on every weight: the zero-initialised ones (output, FFN value,
    LoRA down-projections) would otherwise hide whole paths of the computation."""
    torch.manual_seed(seed)
    model = RWKV7(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest reference value."""
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


@contextmanager
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread: these tensors are tiny, and on a loaded two-core machine the
    thread pool's synchronisation can cost 100x more than the arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
