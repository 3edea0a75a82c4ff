"""Batched decoding: one parallel prefill of the context, then K candidates step by step.

The context is never fed token by token (the prototype's defect 3): `model.prefill` runs it
chunk-parallel once, its state is expanded to K candidates, and each new token costs one
O(1) recurrent step for all K at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from pianomuse.generate.grammar import Grammar
from pianomuse.generate.sampling import Sampling, sample
from pianomuse.model import RWKV7, RWKVState
from pianomuse.model.quant import DEFAULT_PRECISION, cached_on, inference_model
from pianomuse.model.traced import fast_step

# Contexts whose prefill each model keeps, per precision (the state of the 6 x 256 model is
# 0.4 MB): asking again after the same context (another seed, other settings, another
# take in the web copilot) skips the prefill, 0.14-0.32 s of a 1,007-token context on 2
# threads (benchmarks/complete_speed.py).
PREFILLS_KEPT = 8


@dataclass
class Continuation:
    """One candidate: its tokens and the model's mean log-likelihood of them."""

    ids: np.ndarray  # (T,) generated token ids (without the closing Bar)
    loglik: float  # mean log p(token) in nats under the model at temperature 1


@dataclass
class DecodeStats:
    """Where the time went."""

    prefill_tokens: int
    prefill_s: float
    decode_steps: int
    decode_s: float


class KeptPrefills:
    """The last-token logits and state after recent contexts, by their exact token ids,
    least recently used first out. Callers expand the state into new tensors before
    stepping it (`RWKVState.expand` copies), so what is kept is never changed."""

    def __init__(self, size: int = PREFILLS_KEPT):
        self.size = size
        self._kept: OrderedDict[bytes, tuple[torch.Tensor, RWKVState]] = OrderedDict()
        self._lock = threading.Lock()  # the server decodes in worker threads

    def prefill(self, model: RWKV7, idx: torch.Tensor) -> tuple[torch.Tensor, RWKVState]:
        """`model.prefill(idx [1, T], last_only=True)`, or what it gave for these ids."""
        key = idx.cpu().numpy().tobytes()
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None:
                self._kept.move_to_end(key)
                return hit
        got = model.prefill(idx, last_only=True)
        with self._lock:
            self._kept[key] = got
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return got

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


def kept_prefills(model: RWKV7, precision: str = DEFAULT_PRECISION) -> KeptPrefills:
    """The prefills kept for `model` at `precision`, until its weights change."""
    return cached_on(model, f"prefills_{precision}", KeptPrefills)


@torch.inference_mode()
def continue_tokens(
    model: RWKV7,
    context: np.ndarray,
    *,
    candidates: int,
    sampling: Sampling,
    bar_id: int,
    grammar: Grammar | None = None,
    bars: int | None = None,
    max_new_tokens: int = 4096,
    progress: Callable[[float], None] | None = None,
    precision: str = DEFAULT_PRECISION,
) -> tuple[list[Continuation], DecodeStats]:
    """K continuations of `context` (token ids, starting with its header).

    With `bars`, each candidate stops exactly when `bars` bars are complete (the Bar that would
    open the next one is dropped); `max_new_tokens` caps the length (with a grammar, the cap
    closes the open bars instead of cutting a note). `progress`, if given, is called after
    every step with the share of the work done (bars written, or tokens without `bars`).
    `precision` picks the weights on a CPU (`inference_model`, `fast_step`).
    """
    device = next(model.parameters()).device
    gen = sampling.generator()
    t0 = time.perf_counter()
    idx = torch.as_tensor(np.asarray(context), dtype=torch.long, device=device)[None]  # [1, T]
    runner = inference_model(model, precision)
    logits, state = kept_prefills(model, precision).prefill(runner, idx)
    last = logits.expand(candidates, -1)  # [1, V] -> [K, V]
    state = state.expand(candidates)
    step = fast_step(model, state, precision)
    t1 = time.perf_counter()
    rows = grammar.start(candidates) if grammar is not None else None
    out: list[list[int]] = [[] for _ in range(candidates)]
    logp: list[list[float]] = [[] for _ in range(candidates)]
    done = [False] * candidates
    bars_seen = [0] * candidates  # Bar tokens sampled: stopping without a grammar, progress
    # Room to close every open bar (Bar + TimeSig each) once the budget is spent.
    budget = max_new_tokens - (2 * bars + 2 if grammar is not None and bars else 0)
    steps = 0
    for t in range(max_new_tokens + 1):
        allowed = grammar.allowed(rows, force_close=t >= budget) if grammar is not None else None
        tok = sample(last, sampling, gen, allowed)
        lp = torch.log_softmax(last.float(), dim=-1).gather(-1, tok[:, None]).squeeze(-1)
        if grammar is not None:
            grammar.advance(rows, tok)
        for i, (tk, p) in enumerate(zip(tok.tolist(), lp.tolist(), strict=True)):
            if done[i]:
                continue
            bars_seen[i] += tk == bar_id
            if grammar is not None:
                done[i] = rows[i].done
            elif bars is not None:
                done[i] = bars_seen[i] > bars
            if not done[i]:
                out[i].append(tk)
                logp[i].append(p)
                done[i] = len(out[i]) >= max_new_tokens and bars is None
        if progress is not None:
            progress(_share_done(out, bars_seen, done, bars, max_new_tokens))
        if all(done) or t == max_new_tokens:
            break
        last, state = step(tok, state)
        steps += 1
    t2 = time.perf_counter()
    conts = [
        Continuation(np.asarray(o, dtype=np.int64), float(np.mean(p)) if p else 0.0)
        for o, p in zip(out, logp, strict=True)
    ]
    return conts, DecodeStats(idx.shape[1], t1 - t0, steps, t2 - t1)


@torch.inference_mode()
def stream_tokens(
    model: RWKV7,
    logits: torch.Tensor,
    state: RWKVState,
    *,
    grammar: Grammar,
    generator: torch.Generator,
    sampling: Sampling,
    max_new_tokens: int,
    precision: str = DEFAULT_PRECISION,
) -> Iterator[int]:
    """One candidate's tokens, one at a time as each is sampled, from the model's `logits`
    [1, V] and `state` after its context,
    until the grammar closes. The live copilot plays a note as soon as its tokens exist;
    `continue_tokens` is the batched twin (the same tokens for one candidate and one seed).
    """
    rows = grammar.start(1)
    step = fast_step(model, state, precision)
    state = state.clone()  # the step overwrites its state: the caller's stays as it was
    budget = max_new_tokens - (2 * grammar.bars + 2 if grammar.bars else 0)
    last = logits
    for t in range(max_new_tokens + 1):
        tok = sample(last, sampling, generator, grammar.allowed(rows, force_close=t >= budget))
        grammar.advance(rows, tok)
        if rows[0].done:
            return
        yield int(tok[0])
        last, state = step(tok, state)


def _share_done(
    out: list[list[int]], bars_seen: list[int], done: list[bool], bars: int | None, limit: int
) -> float:
    """Mean over candidates of the share written (bars completed, or tokens); finished ones
    count whole."""
    shares = [
        1.0 if d else (min(max(b - 1, 0) / bars, 1.0) if bars else min(len(o) / limit, 1.0))
        for o, b, d in zip(out, bars_seen, done, strict=True)
    ]
    return sum(shares) / len(shares)
