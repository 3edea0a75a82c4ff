"""The model on PyTorch as a generation engine (`pianomuse.generate.engine.Engine`): the
definition itself, for any model file, a style's weights, CUDA, and the tests that hold the
ONNX engine to it.

On a CPU it runs the fast paths: the int8 copy (`model.quant`), the traced step and the traced
short prefills (`model.traced`); a context is read by the chunk-parallel prefill.

Letters: K rows (candidates), T time, V vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pianomuse.generate.engine import DEFAULT_PRECISION, KeptPrefills, ModelFacts
from pianomuse.model.cache import cached_on
from pianomuse.model.quant import inference_model
from pianomuse.model.rwkv7 import RWKV7
from pianomuse.model.state import RWKVState
from pianomuse.model.traced import Prefill, Step, fast_prefill, fast_step


def _numpy(logits: Tensor) -> np.ndarray:
    return logits.float().cpu().numpy()


class TorchEngine:
    """`model` at `precision`, reading contexts from `start` (a style's state; None: zeros),
    which `start_key` names among the prefills kept on the model."""

    runtime = "torch"

    def __init__(
        self,
        model: RWKV7,
        precision: str = DEFAULT_PRECISION,
        start: RWKVState | None = None,
        start_key: str = "",
    ) -> None:
        self.model, self.precision, self.start, self.start_key = model, precision, start, start_key
        # The fast paths, looked up once: `cached_on` checks every weight's version per call.
        self._step: Step | None = None
        self._read: Prefill | None = None
        meta = model.meta
        self.facts = ModelFacts(
            vocab_size=model.config.vocab_size,
            tokenizer_config=meta.tokenizer_config,
            tokenizer_hash=meta.tokenizer_hash,
            trained_seq_len=meta.training.max_seq_len if meta.training else None,
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _ids(self, ids: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(ids), dtype=torch.long, device=self.device)[None]

    def kept(self) -> KeptPrefills[RWKVState]:
        """The contexts' prefills kept on the model (`cached_on`): copies of a copilot share
        them, and new weights drop them."""
        return cached_on(self.model, f"prefills_{self.precision}{self.start_key}", KeptPrefills)

    def context(self, ids: np.ndarray) -> tuple[np.ndarray, RWKVState]:
        return self.kept().get(ids, self._prefill)

    def _prefill(self, ids: np.ndarray) -> tuple[np.ndarray, RWKVState]:
        runner = inference_model(self.model, self.precision)
        with torch.inference_mode():
            logits, state = runner.prefill(self._ids(ids), self.start, last_only=True)
        return _numpy(logits), state

    def read(self, ids: np.ndarray, state: RWKVState | None) -> tuple[np.ndarray, RWKVState]:
        self.warm_up(reading=True)
        assert self._read is not None
        with torch.inference_mode():
            logits, new = self._read(self._ids(ids), state if state is not None else self.start)
        return _numpy(logits), new

    def step(self, tok: np.ndarray, state: RWKVState) -> tuple[np.ndarray, RWKVState]:
        if self._step is None:
            self.warm_up()
        assert self._step is not None
        with torch.inference_mode():
            logits, state = self._step(torch.from_numpy(np.asarray(tok, np.int64)).to(self.device),
                                       state)  # fmt: skip
        return _numpy(logits), state

    def expand(self, state: RWKVState, k: int) -> RWKVState:
        return state.expand(k)

    def warm_up(self, reading: bool = False) -> None:
        if self._step is None:
            with torch.inference_mode():
                zeros = RWKVState.zeros(self.model.config, 1, device=self.device)
                self._step = fast_step(self.model, zeros, self.precision)
        if reading and self._read is None:
            self._read = fast_prefill(self.model, self.precision)
