"""The model on ONNX Runtime, over numpy arrays: the graphs `pianomuse.model.export` writes
(the one-token step and a prefill window), with the state as a named structure.

This module imports neither torch nor anything that does; `RWKV7` stays the definition, and
tests hold the two to the same logits.

Letters: L layers, B batch, T time, C width, H heads, N head size, V vocab.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pianomuse.errors import UserError
from pianomuse.generate.engine import DEFAULT_PRECISION, KeptPrefills, ModelFacts, check_precision

META_FILE = "model.json"
_KINDS = ("att_shift", "wkv", "ffn_shift")


def graph_file(graph: str, precision: str) -> str:
    """The file name of a graph ("step" or "prefill") in an exported folder."""
    return f"{graph}.onnx" if precision == "fp32" else f"{graph}.{precision}.onnx"


@dataclass
class State:
    """Everything needed to continue a batch of sequences (as `RWKVState`, in numpy)."""

    att_shift: list[np.ndarray]  # L x [B,C] last time-mix input (after ln1)
    wkv: list[np.ndarray]  # L x [B,H,N,N] fp32, rows = value dim, cols = key dim
    ffn_shift: list[np.ndarray]  # L x [B,C] last channel-mix input (after ln2)

    @classmethod
    def zeros(cls, config: dict[str, Any], batch: int) -> State:
        c, layers = config["n_embd"], range(config["n_layer"])
        h, n = c // config["head_size"], config["head_size"]
        return cls(
            att_shift=[np.zeros((batch, c), np.float32) for _ in layers],
            wkv=[np.zeros((batch, h, n, n), np.float32) for _ in layers],
            ffn_shift=[np.zeros((batch, c), np.float32) for _ in layers],
        )

    def feeds(self) -> dict[str, np.ndarray]:
        """The graphs' state inputs by name."""
        return {f"{kind}_{i}": t for kind in _KINDS for i, t in enumerate(getattr(self, kind))}

    @classmethod
    def from_outputs(cls, outs: list[np.ndarray], n_layer: int) -> State:
        """The state from a graph's outputs after the logits: L of each kind, in order."""
        L = n_layer
        return cls(list(outs[:L]), list(outs[L : 2 * L]), list(outs[2 * L : 3 * L]))

    def _map(self, fn) -> State:
        return State(*([fn(t) for t in getattr(self, kind)] for kind in _KINDS))

    def select(self, index: list[int] | np.ndarray) -> State:
        """Keep (or reorder) batch rows."""
        return self._map(lambda t: t[np.asarray(index)])

    @classmethod
    def concat(cls, states: list[State]) -> State:
        """The states of several batches as one, in order."""
        return cls(*([np.concatenate(ts) for ts in zip(*(getattr(s, k) for s in states),
                                                        strict=True)] for k in _KINDS))  # fmt: skip


class OnnxModel:
    """An exported model folder, run by ONNX Runtime on `threads` CPU threads with the
    graphs of `precision` ("int8": weight matmuls in int8, the default as on PyTorch)."""

    def __init__(
        self,
        folder: str | Path,
        precision: str = DEFAULT_PRECISION,
        threads: int = 1,
        cuda: bool = True,
    ) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        precision = check_precision(precision)
        try:
            self.info = json.loads((folder / META_FILE).read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{folder}: not an exported model ({e})") from None
        self.config: dict[str, Any] = self.info["model_config"]
        self.window: int = self.info["prefill_tokens"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def session(name: str) -> Any:
            return ort.InferenceSession(str(folder / name), opts, providers=_providers(ort, cuda))

        self.precision = precision
        self._step = session(graph_file("step", precision))
        self._prefill = session(graph_file("prefill", precision))
        self.providers: list[str] = self._step.get_providers()  # where it runs, first first

    @property
    def n_layer(self) -> int:
        return self.config["n_layer"]

    def step(self, tok: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """tok [B] -> (logits [B,V], the state after it); `state` is left as it was."""
        feeds = {"tok": np.asarray(tok, np.int64), **state.feeds()}
        outs = self._step.run(None, feeds)
        return outs[0], State.from_outputs(outs[1:], self.n_layer)

    def prefill(self, idx: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        """idx [B,T] -> (logits [B,V] of the last token, the state after it), window by
        window of the prefill graph; the last window is padded and its padding masked."""
        idx = np.asarray(idx, np.int64)
        bsz, seq = idx.shape
        if seq == 0:
            raise ValueError("idx must hold at least one token")
        state = state or State.zeros(self.config, bsz)
        if bsz > 1:  # the graph reads one sequence (see `pianomuse.model.export`)
            rows = [self.prefill(idx[b : b + 1], state.select([b])) for b in range(bsz)]
            return np.concatenate([lg for lg, _ in rows]), State.concat([s for _, s in rows])
        logits = None
        for start in range(0, seq, self.window):
            part = idx[:, start : start + self.window]  # [B, <= W]
            n = part.shape[1]
            if n < self.window:
                part = np.pad(part, ((0, 0), (0, self.window - n)))
            feeds = {"idx": part, "lengths": np.full(bsz, n, np.int64), **state.feeds()}
            outs = self._prefill.run(None, feeds)
            logits, state = outs[0], State.from_outputs(outs[1:], self.n_layer)
        return logits, state


def _providers(ort: Any, cuda: bool) -> list[str]:
    """With `cuda`, CUDA where this onnxruntime build has it; the CPU else and after."""
    have = ort.get_available_providers()
    wanted = ("CUDAExecutionProvider",) * cuda + ("CPUExecutionProvider",)
    return [p for p in wanted if p in have]


class OnnxEngine:
    """An exported model as a generation engine (`pianomuse.generate.engine.Engine`)."""

    runtime = "onnx"

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        info = model.info
        training = info.get("training") or {}
        self.facts = ModelFacts(
            vocab_size=model.config["vocab_size"],
            tokenizer_config=info.get("tokenizer_config"),
            tokenizer_hash=info.get("tokenizer_hash"),
            trained_seq_len=training.get("max_seq_len"),
        )
        self._kept: KeptPrefills[State] = KeptPrefills()

    def kept(self) -> KeptPrefills[State]:
        return self._kept

    def context(self, ids: np.ndarray) -> tuple[np.ndarray, State]:
        return self._kept.get(ids, lambda ids: self.model.prefill(np.asarray(ids)[None]))

    def read(self, ids: np.ndarray, state: State | None) -> tuple[np.ndarray, State]:
        return self.model.prefill(np.asarray(ids)[None], state)

    def step(self, tok: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        return self.model.step(tok, state)

    def expand(self, state: State, k: int) -> State:
        return state.select([0] * k)

    def warm_up(self, reading: bool = False) -> None:
        # ONNX Runtime sets up a session's kernels on its first run.
        state = State.zeros(self.model.config, 1)
        self.model.step(np.zeros(1, np.int64), state)
        if reading:
            self.model.prefill(np.zeros((1, 1), np.int64), state)
