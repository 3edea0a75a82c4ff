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


def assert_traced_step_follows(model, traced, state, gen, *, batches, steps, tol) -> None:
    """A traced step against `model.step`, token after token from `state` repeated to each
    batch size in `batches`: the same logits and state within `tol`, and (as with
    `inplace=True`) the state it is given overwritten and returned."""
    fields = ("att_shift", "wkv", "ffn_shift")
    for batch in batches:
        eager_st = state.expand(batch)
        fast_st = eager_st.clone()
        for _ in range(steps):
            tok = torch.randint(0, model.config.vocab_size, (batch,), generator=gen)
            want, eager_st = model.step(tok, eager_st)
            got, new = traced(tok, fast_st)
            for name in fields:
                for a, b in zip(getattr(new, name), getattr(fast_st, name), strict=True):
                    assert a.data_ptr() == b.data_ptr()  # overwritten and returned
            fast_st = new
            assert rel_err(got, want) < tol
            for name in fields:
                for a, b in zip(getattr(fast_st, name), getattr(eager_st, name), strict=True):
                    assert rel_err(a, b) < tol, name
