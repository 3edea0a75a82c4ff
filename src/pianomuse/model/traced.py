"""The one-token step recorded as a TorchScript graph: the fast path of decoding on a CPU.

At batch 1 the step is a few hundred small operations, and the Python interpreter between
them costs about as much as the weight matmuls (measured: 8.0 ms eager against 4.6 ms traced
per token on one thread, the same numbers to the last bit). `torch.jit.trace` records the
operations of `RWKV7.step` once, in about a tenth of a second, and runs them in C++ after.
It has no control flow of its own to lose: every branch in the step depends on the layer
index and the config, never on the data.

`RWKV7.step` is the twin (tests compare logits and state); `fast_step` falls back to it
when tracing fails, and decoding takes `fast_step(model, state, precision)`, by default
the graph of the int8 copy (`model.quant`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pianomuse.model.quant import DEFAULT_PRECISION, cached_on, inference_model
from pianomuse.model.rwkv7 import RWKV7
from pianomuse.model.state import RWKVState

Step = Callable[[Tensor, RWKVState], tuple[Tensor, RWKVState]]


class _FlatStep(nn.Module):
    """`model.step` over flat tensors (a traced graph takes and returns tensors only): tok
    [B], then the L att_shift, L wkv and L ffn_shift tensors of the state."""

    def __init__(self, model: RWKV7):
        super().__init__()
        self.model = model
        self.n_layer = model.config.n_layer

    def forward(self, tok: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        L = self.n_layer
        state = RWKVState(list(flat[:L]), list(flat[L : 2 * L]), list(flat[2 * L :]))
        logits, new = self.model.step(tok, state, inplace=True)
        return (logits, *new.att_shift, *new.wkv, *new.ffn_shift)


def trace_step(model: RWKV7, state: RWKVState) -> Step:
    """The traced step of `model`, recorded on the shapes of `state` (any batch size runs
    it after: the sizes are read from the inputs), which is left as it was. Like
    `model.step(..., inplace=True)`, the step it returns overwrites the state it is given."""
    state = state.clone()  # tracing and warming up run the step on it
    flat = (*state.att_shift, *state.wkv, *state.ffn_shift)
    tok = torch.zeros(state.batch_size, dtype=torch.long, device=flat[0].device)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns where Python reads a shape: the step's own batch check and
        # group_norm's. Both are checks of the input, not data flow; the graph is exact at
        # any batch size (tested).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch 2.15 marks `torch.jit.trace` deprecated; where a later torch drops it, the
        # call fails and `fast_step` runs the eager twin.
        warnings.simplefilter("ignore", FutureWarning)
        graph = torch.jit.trace(_FlatStep(model), (tok, *flat), check_trace=False)
    L = model.config.n_layer

    def step(tok: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        out = graph(tok, *state.att_shift, *state.wkv, *state.ffn_shift)
        return out[0], RWKVState(list(out[1 : L + 1]), list(out[L + 1 : 2 * L + 1]),
                                 list(out[2 * L + 1 :]))  # fmt: skip

    # TorchScript optimises a graph over its first calls (measured: the first live answer's
    # first note 240 ms instead of 55): make them here, as part of the tracing.
    with torch.no_grad():
        for _ in range(3):
            step(tok, state)
    return step


def fast_step(model: RWKV7, state: RWKVState, precision: str = DEFAULT_PRECISION) -> Step:
    """The fastest one-token step for `model` on this machine: on a CPU the traced graph of
    `inference_model(model, precision)` (with "int8", the int8 copy), recorded once per
    model and precision and kept until the weights change; the eager step on other devices
    or if tracing fails. `state` only gives the shapes to record (it is left as it was).

    Every step overwrites the state it is given and returns it (as `model.step(...,
    inplace=True)`): at batch 4 a new state a token costs 20 % of the step (measured; its
    1.5 MB are fresh memory every time). Decoding loops own their state; clone one to keep
    it."""
    runner = inference_model(model, precision)

    def eager(tok: Tensor, st: RWKVState) -> tuple[Tensor, RWKVState]:
        return runner.step(tok, st, inplace=True)

    if next(model.parameters()).device.type != "cpu":
        return eager

    def build() -> Step:
        try:
            return trace_step(runner, state)
        except Exception:  # noqa: BLE001 - an op the tracer cannot record: the eager twin
            return eager

    return cached_on(model, f"step_{precision}", build)
