"""Styles: the copilot taught a handful of a user's pieces, on a CPU, in minutes.

Three ways, all leaving the model's file untouched (a style is a small file of its own):

- `state` (state tuning): only the recurrence's initial state is learnt, the state every
  prompt then starts from instead of zeros. A recurrent model carries everything it has
  heard in that state, so a learnt one is "having heard pieces like these"; its tensors are
  the model's state size (about 0.4 MB for the 6 x 256 model).
- `head`: only the output layer (the final norm and the head) is learnt.
- `lora`: a low-rank change B A (rank `LORA_RANK`) of every projection of every block is
  learnt (Hu et al. 2021, "LoRA"); applied, it is added to the weights.

`tune` learns one from token streams and reports the held-out pieces' bits per note with
and without it; `Style.save`/`load` keep it in a safetensors file, with the model it was made
for (a style is refused on another model).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn
from torch.nn.utils import parametrize

from pianomuse.atomic import write_bytes_atomic
from pianomuse.errors import UserError
from pianomuse.model import RWKV7, RWKVState
from pianomuse.model.cache import without_cache
from pianomuse.tokenizer import Kind, Tokenizer

METHODS = ("state", "head", "lora")
WINDOW = 512  # tokens of a training window
BATCH = 4  # windows a step
EVAL_TOKENS = 1024  # tokens of each held-out piece that are scored
LEARNING_RATE = {"state": 0.02, "head": 1e-3, "lora": 1e-3}  # tried on the chorales
# Rank 4 on the six projections of each block: 0.44 MB for the 6 x 256 model, within the
# 1 MB a style may weigh.
LORA_RANK = 4
LORA_TARGETS = ("att.receptance", "att.key", "att.value", "att.output", "ffn.key", "ffn.value")


@dataclass
class Style:
    """What a style changes (`tensors`, by `method`) and what it was made for (`meta`)."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the tensors (names and bytes): what tells two styles apart."""
        h = hashlib.sha256()
        for name in sorted(self.tensors):
            h.update(name.encode())
            h.update(
                self.tensors[name].detach().cpu().flatten().view(torch.uint8).numpy().tobytes()
            )
        return h.hexdigest()

    @property
    def method(self) -> str:
        return str(self.meta["method"])

    def start(self, batch: int = 1) -> RWKVState | None:
        """The state prompts start from (None: zeros, as without a style)."""
        if self.method != "state":
            return None
        n = int(self.meta["n_layer"])
        layers = [[self.tensors[f"{name}.{i}"] for i in range(n)] for name in _STATE]
        return RWKVState(*layers).expand(batch)

    def apply(self, model: RWKV7) -> RWKV7:
        """The model this style writes with: a copy with its layers swapped in (`head`) or
        its low-rank changes added (`lora`), or the model itself (`state`: it changes the
        start, not the weights)."""
        if self.method == "state":
            return model
        out = copy.deepcopy(model, without_cache(model))  # a served model holds graphs, locks
        with torch.no_grad():
            for name, p in out.named_parameters():
                if name in self.tensors:
                    p.copy_(self.tensors[name])
                elif self.method == "lora" and f"{name}.lora_a" in self.tensors:
                    p.add_(self.tensors[f"{name}.lora_b"] @ self.tensors[f"{name}.lora_a"])
        return out

    def check(self, model: RWKV7, model_sha256: str | None) -> None:
        """Refuse a style made for another model, in one line."""
        made = self.meta.get("model_sha256")
        mine = {k: getattr(model.config, k) for k in ("n_layer", "n_embd", "vocab_size")}
        theirs = {k: self.meta.get(k) for k in mine}
        tok = model.meta.tokenizer_hash
        if (
            theirs != mine
            or self.meta.get("tokenizer_hash") != tok
            or (made and model_sha256 and made != model_sha256)
        ):
            what = self.meta.get("model", "another model")
            raise UserError(f"this style was tuned for {what}, not for this model")

    def save(self, path: Path) -> None:
        """The style as a safetensors file (its facts in the metadata); written atomically."""
        tensors = {k: v.contiguous() for k, v in self.tensors.items()}
        data = save(tensors, metadata={"pianomuse_style": json.dumps(self.meta)})
        write_bytes_atomic(data, path)

    @classmethod
    def load(cls, path: Path) -> Style:
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads((f.metadata() or {})["pianomuse_style"])
            return cls(load_file(str(path)), {**meta, "name": Path(path).name})
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except Exception as e:  # noqa: BLE001 - whatever else the file is, one line
            raise UserError(f"{path}: not a Piano Muse style ({type(e).__name__})") from None


_STATE = ("att_shift", "wkv", "ffn_shift")


def bits_per_note(
    model: RWKV7, pieces: Sequence[np.ndarray], st: Any, start: Style | None
) -> float:
    """Bits the model spends per note on the first `EVAL_TOKENS` tokens of each piece, from
    the style's start (or zeros)."""
    bits, notes = 0.0, 0
    with torch.no_grad():
        for ids in pieces:
            idx = torch.as_tensor(ids[:EVAL_TOKENS], dtype=torch.long)[None]  # [1, T]
            state = None if start is None else start.start(1)
            logits, _ = (start.apply(model) if start else model).prefill(idx[:, :-1], state)
            nll = F.cross_entropy(logits[0].float(), idx[0, 1:], reduction="sum")
            bits += float(nll) / math.log(2)
            notes += int((st.kinds(ids[1:EVAL_TOKENS]) == Kind.PITCH).sum())
    return bits / max(notes, 1)


def tune(
    model: RWKV7,
    tok: Tokenizer,
    pieces: Sequence[np.ndarray],
    held_out: Sequence[np.ndarray],
    *,
    method: str = "lora",
    minutes: float = 10.0,
    seed: int = 0,
    progress: Callable[[float, float | None], None] | None = None,
) -> Style:
    """A style learnt from `pieces` (token ids) for at most `minutes`, scored on `held_out`
    before and after (bits per note, `meta`); `progress(share of the time, latest bits)`."""
    if method not in METHODS:
        raise UserError(f"--method is one of {', '.join(METHODS)}, not {method!r}")
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model, without_cache(model)).eval().requires_grad_(False)
    params = _learnable(model, method, gen)
    learner = _with_low_rank(model, params) if method == "lora" else model
    opt = torch.optim.Adam(params.values(), lr=LEARNING_RATE[method])
    style = Style(params, {"method": method, "n_layer": model.config.n_layer})
    before = bits_per_note(model, held_out, tok.structure, None)
    curve, t0, step = [(0.0, before)], time.perf_counter(), 0
    while (elapsed := time.perf_counter() - t0) < 60 * minutes:
        idx, mask = _batch(pieces, tok, gen)
        state = style.start(BATCH) if method == "state" else None
        logits, _ = learner.prefill(idx[:, :-1], state)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), idx[:, 1:].flatten(), reduction="none")
        loss = (loss * mask.flatten()).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            frozen = Style({k: v.detach().clone() for k, v in params.items()}, style.meta)
            curve.append((elapsed / 60, bits_per_note(model, held_out, tok.structure, frozen)))
        if progress is not None:
            progress(min(elapsed / (60 * minutes), 1.0), curve[-1][1])
    out = Style({k: v.detach().clone() for k, v in params.items()}, dict(style.meta))
    after = bits_per_note(model, held_out, tok.structure, out)
    config = model.config
    out.meta |= {
        "n_embd": config.n_embd,
        "vocab_size": config.vocab_size,
        "tokenizer_hash": tok.hash,
        "pieces": len(pieces),
        "held_out": len(held_out),
        "steps": step,
        "minutes": round((time.perf_counter() - t0) / 60, 2),
        "bits_per_note_before": round(before, 4),
        "bits_per_note_after": round(after, 4),
        "curve": [[round(m, 3), round(b, 4)] for m, b in [*curve, (minutes, after)]],
    }
    return out


def _learnable(model: RWKV7, method: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The tensors a method learns: the initial state (zeros at first), the model's own
    output layer (from its weights), or low-rank changes (A random, B zeros: no change at
    first, as LoRA starts)."""
    if method == "lora":
        out = {}
        for name, m in model.named_modules():
            if name.endswith(LORA_TARGETS) and isinstance(m, nn.Linear):
                a = torch.randn(LORA_RANK, m.in_features, generator=gen) / math.sqrt(m.in_features)
                out[f"{name}.weight.lora_a"] = a.requires_grad_(True)
                out[f"{name}.weight.lora_b"] = torch.zeros(m.out_features, LORA_RANK,
                                                           requires_grad=True)  # fmt: skip
        return out
    if method == "head":
        names = ("ln_out.weight", "ln_out.bias", "head.weight")
        found = dict(model.named_parameters())
        return {n: found[n].requires_grad_(True) for n in names}
    zeros = RWKVState.zeros(model.config, 1)
    return {f"{name}.{i}": t.requires_grad_(True)
            for name in _STATE for i, t in enumerate(getattr(zeros, name))}  # fmt: skip


class _PlusLowRank(nn.Module):
    """A weight's parametrisation W -> W + B A, so that training sees the change it learns."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b = a, b  # [r, in], [out, r]: the learnt tensors themselves

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.b @ self.a


def _with_low_rank(model: RWKV7, params: dict[str, torch.Tensor]) -> RWKV7:
    """A copy of `model` whose targeted weights read W + B A from `params` as they learn."""
    out = copy.deepcopy(model)
    for name, m in out.named_modules():
        if f"{name}.weight.lora_a" in params:
            a, b = params[f"{name}.weight.lora_a"], params[f"{name}.weight.lora_b"]
            parametrize.register_parametrization(m, "weight", _PlusLowRank(a, b))
    return out


def _batch(
    pieces: Sequence[np.ndarray], tok: Tokenizer, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`BATCH` random windows of `WINDOW` + 1 tokens, each from a bar line with the header in
    force there, as a prompt starts (shorter ones padded): ids [B, W+1] and the mask of the
    targets that count [B, W]."""
    st = tok.structure
    idx = torch.full((BATCH, WINDOW + 1), tok.pad_id, dtype=torch.long)
    for b in range(BATCH):
        ids = pieces[int(torch.randint(len(pieces), (1,), generator=gen))]
        bars = st.bar_starts(ids)
        at = int(bars[int(torch.randint(len(bars), (1,), generator=gen))])
        chunk = torch.as_tensor(st.with_header(ids, at)[: WINDOW + 1], dtype=torch.long)
        idx[b, : len(chunk)] = chunk
    return idx, (idx[:, 1:] != tok.pad_id).float()
