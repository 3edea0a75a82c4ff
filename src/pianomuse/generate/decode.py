"""Batched decoding: one parallel prefill of the context, then K candidates step by step.

The context is never fed token by token: the engine reads it in one prefill (kept for the
next ask after the same context), its state is expanded to K candidates, and each new token
costs one O(1) recurrent step for all K at once. The model is an `Engine`; everything here is
numpy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pianomuse.generate.engine import Engine
from pianomuse.generate.grammar import Grammar, Row
from pianomuse.generate.sampling import Sampling, log_softmax, sample


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


def _budget(max_new_tokens: int, grammar: Grammar | None, bars: int | None) -> int:
    """Tokens a candidate may write freely: with a grammar and bars, room is left to close
    every open bar (Bar + TimeSig each) once the budget is spent."""
    return max_new_tokens - (2 * bars + 2 if grammar is not None and bars else 0)


def _decode(
    engine: Engine,
    logits: np.ndarray,
    state: Any,
    *,
    candidates: int,
    sampling: Sampling,
    generator: np.random.Generator,
    grammar: Grammar | None,
    bars: int | None,
    max_new_tokens: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, list[Row] | None]]:
    """The one decoding loop: K candidates after a context whose last logits [1, V] and
    state are given (left as they were). Yields each step's tokens [K], their log-probs [K]
    and the grammar's rows (after the tokens); the caller stops it when it has enough."""
    last = np.repeat(logits, candidates, axis=0)  # [1, V] -> [K, V]
    state = engine.expand(state, candidates)  # a copy: the steps may overwrite it
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
            last, state = engine.step(tok, state)


def continue_tokens(
    engine: Engine,
    context: np.ndarray,
    *,
    candidates: int,
    sampling: Sampling,
    bar_id: int,
    grammar: Grammar | None = None,
    bars: int | None = None,
    max_new_tokens: int = 4096,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[Continuation], DecodeStats]:
    """K continuations of `context` (token ids, starting with its header).

    With `bars`, each candidate stops exactly when `bars` bars are complete (the Bar that would
    open the next one is dropped); `max_new_tokens` caps the length (with a grammar, the cap
    closes the open bars instead of cutting a note). `progress`, if given, is called after
    every step with the share of the work done (bars written, or tokens without `bars`).
    """
    t0 = time.perf_counter()
    context = np.asarray(context, np.int64)
    logits, state = engine.context(context)
    t1 = time.perf_counter()
    out: list[list[int]] = [[] for _ in range(candidates)]
    logp: list[list[float]] = [[] for _ in range(candidates)]
    done = [False] * candidates
    bars_seen = [0] * candidates  # Bar tokens sampled: stopping without a grammar, progress
    steps = -1
    loop = _decode(
        engine,
        logits,
        state,
        candidates=candidates,
        sampling=sampling,
        generator=sampling.generator(),
        grammar=grammar,
        bars=bars,
        max_new_tokens=max_new_tokens,
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
    return conts, DecodeStats(len(context), t1 - t0, steps, t2 - t1)


def stream_tokens(
    engine: Engine,
    logits: np.ndarray,
    state: Any,
    *,
    grammar: Grammar,
    generator: np.random.Generator,
    sampling: Sampling,
    max_new_tokens: int,
) -> Iterator[int]:
    """One candidate's tokens, one at a time as each is sampled, after a context whose last
    `logits` [1, V] and `state` are given (left as they were), until the grammar closes. The
    live copilot plays a note as soon as its tokens exist; it is `continue_tokens`'s loop
    (the same tokens for one candidate and one seed)."""
    loop = _decode(
        engine,
        logits,
        state,
        candidates=1,
        sampling=sampling,
        generator=generator,
        grammar=grammar,
        bars=grammar.bars,
        max_new_tokens=max_new_tokens,
    )
    for tok, _, rows in loop:
        if rows[0].done:
            return
        yield int(tok[0])


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
