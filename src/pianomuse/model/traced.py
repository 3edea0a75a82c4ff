"""The one-token step and short prefills recorded as TorchScript graphs: the fast paths of
decoding and of live play on a CPU.

At batch 1 the step is a few hundred small operations, and the Python interpreter between
them costs about as much as the weight matmuls. `torch.jit.trace` records the operations of
`RWKV7.step` once and runs them in C++ after, with the same numbers to the last bit. It
has no control flow of its own to lose: every branch in the step depends on the layer index
and the config, never on the data.

`RWKV7.step` is the twin (tests compare logits and state); `fast_step` falls back to it
when tracing fails, and decoding takes `fast_step(model, state, precision)`, by default
the graph of the int8 copy (`pianomuse.model.quant`).

`fast_prefill` does the same for the prefill of a few dozen tokens, a bar that a live
player has just played: there too the interpreter costs a good share of the time. A graph
holds the shapes it was recorded on, so the tokens are padded to a multiple of
`PREFILL_BUCKET`, one graph per multiple, and the padding is masked out of the state
(`RWKV7.prefill(lengths=...)`, its twin being the prefill of the tokens alone).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pianomuse.generate.engine import DEFAULT_PRECISION
from pianomuse.model.cache import cached_on
from pianomuse.model.quant import inference_model
from pianomuse.model.rwkv7 import RWKV7
from pianomuse.model.state import RWKVState

Step = Callable[[Tensor, RWKVState], tuple[Tensor, RWKVState]]
Prefill = Callable[[Tensor, RWKVState | None], tuple[Tensor, RWKVState]]
T = TypeVar("T")

PREFILL_BUCKET = 16  # tokens: one prefill graph per multiple (on average 8 padding tokens)
# Tokens up to which `fast_prefill` makes graphs; longer prefills run eager, where the
# interpreter's share is smaller. Each graph costs time to make and memory the process keeps,
# so they cover a bar's length only, a long bar read at a live trigger included.
PREFILL_TRACED_MAX = 128


def _unflat(out: tuple[Tensor, ...], n_layer: int) -> RWKVState:
    """The state from a graph's flat outputs: L att_shift, L wkv, L ffn_shift."""
    L = n_layer
    return RWKVState(list(out[:L]), list(out[L : 2 * L]), list(out[2 * L :]))


class FlatStep(nn.Module):
    """`model.step` over flat tensors (a traced graph takes and returns tensors only): tok
    [B], then the L att_shift, L wkv and L ffn_shift tensors of the state. `inplace`: the
    step overwrites the state it is given (an ONNX export must not: its graph would return
    the inputs unchanged)."""

    def __init__(self, model: RWKV7, inplace: bool = True):
        super().__init__()
        self.model = model
        self.n_layer = model.config.n_layer
        self.inplace = inplace

    def forward(self, tok: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        state = _unflat(flat, self.n_layer)
        logits, new = self.model.step(tok, state, inplace=self.inplace)
        return (logits, *new.att_shift, *new.wkv, *new.ffn_shift)


class FlatPrefill(nn.Module):
    """`model.prefill(idx, state, lengths=..., last_only=True)` over flat tensors: idx [B,T],
    lengths [B], then the state's tensors as in `FlatStep`."""

    def __init__(self, model: RWKV7):
        super().__init__()
        self.model = model
        self.n_layer = model.config.n_layer

    def forward(self, idx: Tensor, lengths: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        state = _unflat(flat, self.n_layer)
        logits, new = self.model.prefill(idx, state, lengths=lengths, last_only=True)
        return (logits, *new.att_shift, *new.wkv, *new.ffn_shift)


def _trace(module: nn.Module, inputs: tuple[Tensor, ...]) -> torch.jit.ScriptModule:
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns where Python reads a shape: the step's own batch check and
        # group_norm's. Both are checks of the input, not data flow; the graph is exact at
        # any batch size (tested).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch 2.15 marks `torch.jit.trace` deprecated; where a later torch drops it, the
        # call fails and the eager twin runs.
        warnings.simplefilter("ignore", FutureWarning)
        graph = torch.jit.trace(module, inputs, check_trace=False)
        # Freezing inlines the submodules and makes the weights constants of one graph, so the
        # interpreter skips a method call per module. The constants are the module's own
        # tensors (and a few small folded ones); a graph is remade whenever the weights
        # change (`cached_on`).
        return torch.jit.freeze(graph.eval())


def _graph_or_eager(model: RWKV7, key: str, trace: Callable[[], T], eager: T) -> T:
    """On a CPU, `trace()` once per model and key, kept on the model until its weights
    change; `eager` on other devices, or where the tracer cannot record an op."""
    if next(model.parameters()).device.type != "cpu":
        return eager

    def build() -> T:
        try:
            return trace()
        except Exception:  # noqa: BLE001 - an op the tracer cannot record: the eager twin
            return eager

    return cached_on(model, key, build)


def trace_step(model: RWKV7, state: RWKVState) -> Step:
    """The traced step of `model`, recorded on the shapes of `state` (any batch size runs
    it after: the sizes are read from the inputs), which is left as it was. Like
    `model.step(..., inplace=True)`, the step it returns overwrites the state it is given."""
    state = state.clone()  # tracing and warming up run the step on it
    flat = (*state.att_shift, *state.wkv, *state.ffn_shift)
    tok = torch.zeros(state.batch_size, dtype=torch.long, device=flat[0].device)
    graph = _trace(FlatStep(model), (tok, *flat))

    def step(tok: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        out = graph(tok, *state.att_shift, *state.wkv, *state.ffn_shift)
        return out[0], _unflat(out[1:], model.config.n_layer)

    step.graph = graph  # type: ignore[attr-defined] # what runs: a fallback has none

    # TorchScript optimises a graph over its first calls: make them here, not in an answer.
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
    inplace=True)`): a new state every token would be fresh memory every time. Decoding loops
    own their state; clone one to keep it."""
    runner = inference_model(model, precision)

    def eager(tok: Tensor, st: RWKVState) -> tuple[Tensor, RWKVState]:
        return runner.step(tok, st, inplace=True)

    return _graph_or_eager(model, f"step_{precision}", lambda: trace_step(runner, state), eager)


def trace_prefill(model: RWKV7, batch: int, length: int) -> Prefill:
    """The traced prefill of `model` for `batch` rows of at most `length` tokens, with the
    contract of `fast_prefill`'s result. Its graph is recorded on `length` positions and
    pads every input to them."""
    idx = torch.zeros(batch, length, dtype=torch.long)
    lengths = torch.full((batch,), length, dtype=torch.long)
    zeros = RWKVState.zeros(model.config, batch)
    graph = _trace(FlatPrefill(model), (idx, lengths, *zeros.att_shift, *zeros.wkv,
                                         *zeros.ffn_shift))  # fmt: skip

    def prefill(idx: Tensor, state: RWKVState | None) -> tuple[Tensor, RWKVState]:
        if idx.shape[1] > length:
            raise ValueError(f"this prefill takes {length} tokens at most, not {idx.shape[1]}")
        state = state or RWKVState.zeros(model.config, batch)
        lengths = torch.full((batch,), idx.shape[1], dtype=torch.long)
        padded = F.pad(idx, (0, length - idx.shape[1]))  # [B,T] -> [B,length]
        # Unoptimised execution: TorchScript's profiling runs would slow the first calls of
        # every graph, for no later gain on these.
        with torch.no_grad(), torch.jit.optimized_execution(False):
            out = graph(padded, lengths, *state.att_shift, *state.wkv, *state.ffn_shift)
        return out[0], _unflat(out[1:], model.config.n_layer)

    prefill.graph = graph  # type: ignore[attr-defined]

    # The kernels of a graph's shapes are set up on its first call: make it here, not in a
    # player's first bars.
    for _ in range(2):
        prefill(idx, zeros)
    return prefill


def fast_prefill(model: RWKV7, precision: str = DEFAULT_PRECISION, *, batch: int = 1) -> Prefill:
    """The fastest prefill on this machine of a few tokens into a state, for `batch` rows:
    `prefill(idx [B,T], state or None) -> (the last token's logits [B,V], new state)`
    (the given state is left as it was).

    On a CPU, prefills of up to `PREFILL_TRACED_MAX` tokens run a traced graph of
    `inference_model(model, precision)`, one per multiple of `PREFILL_BUCKET`; all of them
    are recorded here, once per model, precision and batch and kept until the weights
    change, so that none is recorded while a player waits. Longer prefills, other devices,
    and a failed trace run `RWKV7.prefill` (the twin)."""
    runner = inference_model(model, precision)

    def eager(idx: Tensor, state: RWKVState | None) -> tuple[Tensor, RWKVState]:
        with torch.no_grad():
            return runner.prefill(idx, state, last_only=True)

    graphs = {
        n: _graph_or_eager(
            model,
            f"prefill_{precision}_{batch}x{n}",
            lambda n=n: trace_prefill(runner, batch, n),
            eager,
        )
        for n in range(PREFILL_BUCKET, PREFILL_TRACED_MAX + 1, PREFILL_BUCKET)
    }

    def prefill(idx: Tensor, state: RWKVState | None) -> tuple[Tensor, RWKVState]:
        if idx.shape[0] != batch:
            raise ValueError(f"this prefill takes {batch} rows, not {idx.shape[0]}")
        bucket = -(-idx.shape[1] // PREFILL_BUCKET) * PREFILL_BUCKET
        return graphs.get(bucket, eager)(idx, state)

    return prefill
