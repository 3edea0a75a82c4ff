"""What generation needs of a model, over numpy arrays: the engine boundary.

Decoding, live play and the copilot see a model only through `Engine`: read token ids into a
state, step a batch of states by one token, copy a state into K rows. Two engines implement
it over the one model definition: `pianomuse.runtime.OnnxEngine` (ONNX Runtime, the default
where a model has an export beside it: no torch) and `pianomuse.model.engine.TorchEngine`
(PyTorch: training's model as it is, styles, and any model file). A new runtime is one more
class with these methods. This module imports neither.

Letters: K rows (candidates), T time, V vocabulary.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from pianomuse.errors import FieldError

PRECISIONS = ("fp32", "int8")  # the weights inference runs on a CPU
DEFAULT_PRECISION = "int8"  # decodes faster for a negligible cost in held-out bits
# Contexts whose prefill an engine keeps: asking again after the same context (another seed,
# other settings, another take in the web copilot) skips the prefill.
PREFILLS_KEPT = 8

S = TypeVar("S")  # an engine's state


def check_precision(precision: str | None) -> str:
    """`precision` if it is one of `PRECISIONS`, the default for None; else one line naming
    the field (a `ValueError`)."""
    if precision is None:
        return DEFAULT_PRECISION
    if precision not in PRECISIONS:
        raise FieldError("precision", f"is one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


@dataclass(frozen=True)
class ModelFacts:
    """What the copilot needs to know of a model besides running it (from its file)."""

    vocab_size: int  # V
    tokenizer_config: dict[str, Any] | None  # the tokenizer it was trained with
    tokenizer_hash: str | None  # that tokenizer's vocabulary hash
    trained_seq_len: int | None  # the training window: the default context length


class Engine(Protocol[S]):
    """A model as generation runs it. States are the engine's own; `read` and `context`
    leave the state they are given as it was, `step` may overwrite its own."""

    facts: ModelFacts
    runtime: str  # "onnx" or "torch": recorded with every generation (they sample differently)

    def context(self, ids: np.ndarray) -> tuple[np.ndarray, S]:
        """ids [T] read from the start state -> (last logits [1,V] fp32, the state); kept for
        the last `PREFILLS_KEPT` contexts."""
        ...

    def read(self, ids: np.ndarray, state: S | None) -> tuple[np.ndarray, S]:
        """ids [T] read from `state` (None: the start) -> (last logits [1,V], a new state):
        a few tokens at a time, as a live player plays them."""
        ...

    def step(self, tok: np.ndarray, state: S) -> tuple[np.ndarray, S]:
        """tok [K] -> (logits [K,V] fp32, the state after it)."""
        ...

    def expand(self, state: S, k: int) -> S:
        """A one-row state as K new rows (a copy)."""
        ...

    def kept(self) -> KeptPrefills[S]:
        """The contexts' prefills this engine keeps (`context`)."""
        ...

    def warm_up(self, reading: bool = False) -> None:
        """Make now what the first generation would make on its way (graphs, int8 copies);
        with `reading`, also what `read` needs (live play)."""
        ...


class KeptPrefills(Generic[S]):
    """The last-token logits and state after recent contexts, by their exact token ids,
    least recently used first out. Engines expand a state into new rows before stepping it,
    so what is kept is never changed."""

    def __init__(self, size: int = PREFILLS_KEPT):
        self.size = size
        self._kept: OrderedDict[bytes, tuple[np.ndarray, S]] = OrderedDict()
        self._lock = threading.Lock()  # the server decodes in worker threads

    def get(
        self, ids: np.ndarray, prefill: Callable[[np.ndarray], tuple[np.ndarray, S]]
    ) -> tuple[np.ndarray, S]:
        """`prefill(ids)`, or what it gave for these ids."""
        key = np.asarray(ids, np.int64).tobytes()
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None:
                self._kept.move_to_end(key)
                return hit
        got = prefill(ids)
        with self._lock:
            self._kept[key] = got
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return got

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
