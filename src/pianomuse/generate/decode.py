"""Batched decoding: one parallel prefill of the context, then K candidates step by step.

The context is never fed token by token: `model.prefill` runs it
chunk-parallel once, its state is expanded to K candidates, and each new token costs one
O(1) recurrent step for all K at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pianomuse.generate.grammar import Grammar, Row
from pianomuse.generate.sampling import Sampling, log_softmax, sample
from pianomuse.model import RWKV7, RWKVState
from pianomuse.model.cache import cached_on
from pianomuse.model.quant import DEFAULT_PRECISION, inference_model
from pianomuse.model.traced import Prefill, fast_prefill, fast_step

# Contexts whose prefill each model keeps, per precision: asking again after the same context
# (another seed, other settings, another take in the web copilot) skips the prefill.
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

    def prefill(
        self, model: RWKV7, idx: torch.Tensor, start: RWKVState | None = None
    ) -> tuple[torch.Tensor, RWKVState]:
        """`model.prefill(idx [1, T], start, last_only=True)`, or what it gave for these ids
        (a cache serves one start: `kept_prefills`)."""
        key = idx.cpu().numpy().tobytes()
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None:
                self._kept.move_to_end(key)
                return hit
        got = model.prefill(idx, start, last_only=True)
        with self._lock:
            self._kept[key] = got
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return got

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


def kept_prefills(
    model: RWKV7, precision: str = DEFAULT_PRECISION, start_key: str = ""
) -> KeptPrefills:
    """The prefills kept for `model` at `precision` from the start `start_key` names (a
    style's; "" for zeros), until its weights change."""
    return cached_on(model, f"prefills_{precision}{start_key}", KeptPrefills)


def _budget(max_new_tokens: int, grammar: Grammar | None, bars: int | None) -> int:
    """Tokens a candidate may write freely: with a grammar and bars, room is left to close
    every open bar (Bar + TimeSig each) once the budget is spent."""
    return max_new_tokens - (2 * bars + 2 if grammar is not None and bars else 0)


def _decode(
    model: RWKV7,
    logits: torch.Tensor,
    state: RWKVState,
    *,
    candidates: int,
    sampling: Sampling,
    generator: np.random.Generator,
    grammar: Grammar | None,
    bars: int | None,
    max_new_tokens: int,
    precision: str,
) -> Iterator[tuple[np.ndarray, np.ndarray, list[Row] | None]]:
    """The one decoding loop: K candidates after a context whose last logits [1, V] and
    state are given (left as they were). Yields each step's tokens [K], their log-probs [K]
    and the grammar's rows (after the tokens); the caller stops it when it has enough. The
    model runs on torch; the grammar and the draw on numpy ([K, V] logits cross each step)."""
    device = logits.device
    last = logits.float().expand(candidates, -1).cpu().numpy()  # [1, V] -> [K, V]
    state = state.expand(candidates)  # a copy: the steps overwrite it
    step = fast_step(model, state, precision)
    rows = grammar.start(candidates) if grammar is not None else None
    budget = _budget(max_new_tokens, grammar, bars)
    for t in range(max_new_tokens + 1):
        allowed = grammar.allowed(rows, force_close=t >= budget) if grammar is not None else None
        tok = sample(last, sampling, generator, allowed)  # [K]
        lp = np.take_along_axis(log_softmax(last), tok[:, None], axis=-1)[:, 0]  # [K]
        if grammar is not None:
            grammar.advance(rows, tok)
        yield tok, lp, rows
        if t < max_new_tokens:
            logits, state = step(torch.from_numpy(tok).to(device), state)
            last = logits.float().cpu().numpy()


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
    start: RWKVState | None = None,
    start_key: str = "",
) -> tuple[list[Continuation], DecodeStats]:
    """K continuations of `context` (token ids, starting with its header).

    With `bars`, each candidate stops exactly when `bars` bars are complete (the Bar that would
    open the next one is dropped); `max_new_tokens` caps the length (with a grammar, the cap
    closes the open bars instead of cutting a note). `progress`, if given, is called after
    every step with the share of the work done (bars written, or tokens without `bars`).
    `precision` picks the weights on a CPU (`inference_model`, `fast_step`); `start` is the
    state the context is read from (a style's; None: zeros), named by `start_key`.
    """
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    idx = torch.as_tensor(np.asarray(context), dtype=torch.long, device=device)[None]  # [1, T]
    runner = inference_model(model, precision)
    logits, state = kept_prefills(model, precision, start_key).prefill(runner, idx, start)
    t1 = time.perf_counter()
    out: list[list[int]] = [[] for _ in range(candidates)]
    logp: list[list[float]] = [[] for _ in range(candidates)]
    done = [False] * candidates
    bars_seen = [0] * candidates  # Bar tokens sampled: stopping without a grammar, progress
    steps = -1
    loop = _decode(
        model,
        logits,
        state,
        candidates=candidates,
        sampling=sampling,
        generator=sampling.generator(),
        grammar=grammar,
        bars=bars,
        max_new_tokens=max_new_tokens,
        precision=precision,
    )
    for tok, lp, rows in loop:
        steps += 1
        for i, (tk, p) in enumerate(zip(tok.tolist(), lp.tolist(), strict=True)):
            if done[i]:
                continue
            bars_seen[i] += tk == bar_id
            if rows is not None:
                done[i] = rows[i].done
            elif bars is not None:
                done[i] = bars_seen[i] > bars
            if not done[i]:
                out[i].append(tk)
                logp[i].append(p)
                done[i] = len(out[i]) >= max_new_tokens and bars is None
        if progress is not None:
            progress(_share_done(out, bars_seen, done, bars, max_new_tokens))
        if all(done):
            break
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
    generator: np.random.Generator,
    sampling: Sampling,
    max_new_tokens: int,
    precision: str = DEFAULT_PRECISION,
) -> Iterator[int]:
    """One candidate's tokens, one at a time as each is sampled, after a context whose last
    `logits` [1, V] and `state` are given (left as they were), until the grammar closes. The
    live copilot plays a note as soon as its tokens exist; it is `continue_tokens`'s loop
    (the same tokens for one candidate and one seed)."""
    loop = _decode(
        model,
        logits,
        state,
        candidates=1,
        sampling=sampling,
        generator=generator,
        grammar=grammar,
        bars=grammar.bars,
        max_new_tokens=max_new_tokens,
        precision=precision,
    )
    for tok, _, rows in loop:
        if rows[0].done:
            return
        yield int(tok[0])


@dataclass(frozen=True)
class Decoder:
    """One model at one precision, as generation runs it: K candidates after a context,
    one candidate streamed, and the prefill of a few tokens into a state (live play)."""

    model: RWKV7
    precision: str = DEFAULT_PRECISION  # the weights inference runs on a CPU
    start: RWKVState | None = None  # the state a context is read from (a style's; None: zeros)
    start_key: str = ""  # names `start` in the kept prefills

    def candidates(self, context: np.ndarray, **kw: Any) -> tuple[list[Continuation], DecodeStats]:
        """`continue_tokens` of this model."""
        return continue_tokens(self.model, context, precision=self.precision, start=self.start,
                               start_key=self.start_key, **kw)  # fmt: skip

    def start_state(self) -> RWKVState | None:
        """A copy of the start, for a stream of prefills (live play)."""
        return None if self.start is None else self.start.clone()

    def stream(self, logits: torch.Tensor, state: RWKVState, **kw: Any) -> Iterator[int]:
        """`stream_tokens` of this model."""
        return stream_tokens(self.model, logits, state, precision=self.precision, **kw)

    def bar_prefill(self) -> Prefill:
        """`fast_prefill` of this model: a few tokens into a state."""
        return fast_prefill(self.model, self.precision)

    def warm_up(self) -> None:
        """Make the int8 copy and the traced step before the first candidate needs them."""
        with torch.inference_mode():
            config = self.model.config
            device = next(self.model.parameters()).device
            fast_step(self.model, RWKVState.zeros(config, 1, device=device), self.precision)


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
