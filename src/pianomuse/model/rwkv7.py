"""RWKV-7 ("x070") language model: one definition, three execution paths.

* ``model(idx)``: logits for training, no state.
* ``model.prefill(idx, state)``: all logits and the state after the last token (chunk-parallel);
  with ``lengths`` a right-padded batch, with ``last_only`` the last token's logits alone.
* ``model.step(tok, state)``: one token per sequence, O(1) recurrent update.

The three share every projection (`TimeMix._mix`, `TimeMix._out`); only the WKV recurrence
differs (chunked scan vs one rank-1 update). Parameter names and shapes follow the official
RWKV-LM layout (`RWKV-v7/train_temp/src/model.py`), so state dicts load in BlinkDL's `rwkv`
package and other RWKV-7 runtimes.

Letters: B batch, T time, C width, H heads, N head size, V vocab, F channel-mix width,
D LoRA rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelMeta, RWKV7Config
from .init import init_official_
from .state import LayerState, RWKVState
from .wkv import wkv7, wkv7_step

# log w = -exp(w_raw) with w_raw = -softplus(-z) - 0.5, i.e. log w = -e^{-0.5} * sigmoid(z): every
# per-step decay lies in (e^{-e^{-0.5}}, 1) = (0.545, 1). The sigmoid form avoids exp(softplus).
_LOG_DECAY_SCALE = math.exp(-0.5)
_LN_X_EPS = 64e-5  # official GroupNorm eps of the WKV output (head_size_divisor 8: 1e-5 * 8**2)


class TimeMix(nn.Module):
    """RWKV-7 time mixing (attention replacement) of one block."""

    def __init__(self, config: RWKV7Config, layer_id: int) -> None:
        super().__init__()
        c, h, n = config.n_embd, config.n_head, config.head_size
        self.layer_id = layer_id
        self.n_head, self.head_size = h, n
        self.config = config

        def vec() -> nn.Parameter:
            return nn.Parameter(torch.zeros(1, 1, c))

        self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g = (vec() for _ in range(6))
        self.w0, self.a0 = vec(), vec()
        self.w1 = nn.Parameter(torch.zeros(c, config.decay_lora))
        self.w2 = nn.Parameter(torch.zeros(config.decay_lora, c))
        self.a1 = nn.Parameter(torch.zeros(c, config.aaa_lora))
        self.a2 = nn.Parameter(torch.zeros(config.aaa_lora, c))
        if layer_id > 0:
            # Layer 0 has no value residual (its v is v_first), so it has no v0/v1/v2 — like
            # BlinkDL's released checkpoints (and no parameter that never gets a gradient).
            self.v0 = vec()
            self.v1 = nn.Parameter(torch.zeros(c, config.mv_lora))
            self.v2 = nn.Parameter(torch.zeros(config.mv_lora, c))
        self.g1 = nn.Parameter(torch.zeros(c, config.gate_lora))
        self.g2 = nn.Parameter(torch.zeros(config.gate_lora, c))
        self.k_k, self.k_a = vec(), vec()
        self.r_k = nn.Parameter(torch.zeros(h, n))
        self.receptance = nn.Linear(c, c, bias=False)
        self.key = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(c, c, bias=False)
        self.output = nn.Linear(c, c, bias=False)
        self.ln_x = nn.GroupNorm(h, c, eps=_LN_X_EPS)

    def _mix(
        self, x: Tensor, xx: Tensor, v_first: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Projections for any leading shape [..., C]; xx = x_{t-1} - x_t (token shift).

        Returns r, log-decay (fp32), k, v, a_wkv = -kk, b_wkv = kk * alpha, gate g, v_first.
        The (1, 1, C) vectors are used as `.view(-1)` (C,) so they broadcast over any leading
        shape, [B, T, C] as well as the one-token [B, C]."""
        h, n = self.n_head, self.head_size
        xr = torch.addcmul(x, xx, self.x_r.view(-1))  # x + (x_{t-1} - x_t) * mix
        xw = torch.addcmul(x, xx, self.x_w.view(-1))
        xk = torch.addcmul(x, xx, self.x_k.view(-1))
        xv = torch.addcmul(x, xx, self.x_v.view(-1))
        xa = torch.addcmul(x, xx, self.x_a.view(-1))
        xg = torch.addcmul(x, xx, self.x_g.view(-1))

        # Module calls, so that a quantised copy (`pianomuse.model.quant`) can swap the
        # projections; the traced step (`model.traced`) removes their per-call cost.
        r = self.receptance(xr)
        k = self.key(xk)
        v = self.value(xv)
        # Decay in fp32 whatever autocast does: w0 is O(1..6) and bf16 would quantise the decay.
        z = self.w0.view(-1).float() + (torch.tanh(xw @ self.w1) @ self.w2).float()
        log_w = -_LOG_DECAY_SCALE * torch.sigmoid(z)
        if self.layer_id == 0:
            v_first = v
        else:
            # Value residual: v + (v_first - v) * sigmoid(v0 + LoRA), a learned blend toward
            # layer 0's value (RWKV-7 paper, "value residual learning").
            gate = torch.sigmoid(self.v0.view(-1) + (xv @ self.v1) @ self.v2)
            v = torch.lerp(v, v_first, gate.to(v.dtype))
        alpha = torch.sigmoid(self.a0.view(-1) + (xa @ self.a1) @ self.a2)  # in-context lr
        g = torch.sigmoid(xg @ self.g1) @ self.g2

        lead = k.shape[:-1]
        kk = (k * self.k_k.view(-1)).view(*lead, h, n)  # [..., C] -> [..., H, N]
        kk = F.normalize(kk, dim=-1, p=2.0, eps=1e-12).view(*lead, h * n)  # unit per head, [.., C]
        k_a = self.k_a.view(-1)
        k = k * torch.addcmul(1 - k_a, alpha, k_a)  # k * (1 + (alpha - 1) * k_a)
        return r, log_w, k, v, -kk, kk * alpha, g, v_first

    def _out(self, y: Tensor, r: Tensor, k: Tensor, v: Tensor, g: Tensor) -> Tensor:
        """GroupNorm per head, bonus term, gate and output projection; y, r, k, v, g [..., C]."""
        h, n = self.n_head, self.head_size
        lead = y.shape[:-1]
        # GroupNorm statistics in fp32: eps 64e-5 is tuned for fp32 and bf16 would skew them.
        ln_x = self.ln_x
        y = y.float().reshape(-1, h * n)  # [..., C] -> [rows, C]: GroupNorm wants 2-D
        y = F.group_norm(y, h, ln_x.weight, ln_x.bias, ln_x.eps).view(*lead, h * n)  # [.., C]
        # Bonus: the current token's own (r . k) per head, weighted by r_k, times its value.
        rk = (r * k * self.r_k.view(-1)).view(*lead, h, n).sum(dim=-1, keepdim=True)  # [..,H,1]
        y = y + (rk * v.view(*lead, h, n)).view(*lead, h * n)  # [..,H,N] -> [.., C]
        return self.output(y * g)

    def forward(
        self,
        x: Tensor,
        shift: Tensor,
        state: Tensor | None,
        v_first: Tensor | None,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Sequence path. x [B,T,C], shift [B,C] (input before x[:,0]), state [B,H,N,N] or None,
        keep [B,T,1] (1 for a token, 0 for padding) or None.

        Returns (out [B,T,C], new state [B,H,N,N] fp32, v_first [B,T,C])."""
        bsz, seq, c = x.shape
        h, n = self.n_head, self.head_size
        r, log_w, k, v, a, b, g, v_first = self._mix(x, _shifted(x, shift) - x, v_first)
        if keep is not None:
            # A padding step leaves the state as it was: decay 1 (log w = 0), no v k^T and no
            # (S a) b^T. Its outputs are meaningless and never read.
            log_w, k, a = log_w * keep, k * keep.to(k.dtype), a * keep.to(a.dtype)

        def heads(t: Tensor) -> Tensor:
            return t.view(bsz, seq, h, n)  # [B,T,C] -> [B,T,H,N]

        y, state = wkv7(
            heads(r), heads(log_w), heads(k), heads(v), heads(a), heads(b), state,
            backend=self.config.wkv_backend, chunk_len=self.config.chunk_len,
        )  # fmt: skip
        out = self._out(y.reshape(bsz, seq, c), r, k, v, g)  # [B,T,H,N] -> [B,T,C]
        return out, state, v_first

    def step(
        self, x: Tensor, shift: Tensor, state: Tensor, v_first: Tensor | None, inplace: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One-token path. x [B,C], shift [B,C], state [B,H,N,N] fp32 (updated in place when
        `inplace`, which spares allocating a new state every token).

        Returns (out [B,C], new state [B,H,N,N] fp32, v_first [B,C])."""
        bsz, c = x.shape
        h, n = self.n_head, self.head_size
        r, log_w, k, v, a, b, g, v_first = self._mix(x, shift.to(x.dtype) - x, v_first)

        def heads(t: Tensor) -> Tensor:
            return t.view(bsz, h, n)  # [B,C] -> [B,H,N]

        y, new_state = wkv7_step(
            heads(r), heads(log_w), heads(k), heads(v), heads(a), heads(b), state, inplace=inplace
        )
        out = self._out(y.view(bsz, c).to(r.dtype), r, k, v, g)  # [B,H,N] -> [B,C]
        return out, new_state, v_first


class _ReluSquare(torch.autograd.Function):
    """relu(x)^2 with the one-line derivative 2 relu(x): autograd's relu then square keeps two
    backward nodes, whose pow re-derives x^1 * 2 in several passes over the activations."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (r,) = ctx.saved_tensors
        return torch.mul(grad, r).mul_(2.0)


def relu_square_reference(x: Tensor) -> Tensor:
    """The plain twin of `relu_square`, and what runs without gradients (and in traces)."""
    return torch.relu(x).square()


def relu_square(x: Tensor) -> Tensor:
    """relu(x)^2, with a fused backward when a gradient is wanted."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _ReluSquare.apply(x)
    return relu_square_reference(x)


class ChannelMix(nn.Module):
    """RWKV-7 channel mixing (relu^2 MLP with token shift), with optional DeepEmbed."""

    def __init__(self, config: RWKV7Config) -> None:
        super().__init__()
        c, f = config.n_embd, config.dim_ffn
        self.x_k = nn.Parameter(torch.zeros(1, 1, c))
        self.key = nn.Linear(c, f, bias=False)
        self.value = nn.Linear(f, c, bias=False)
        # DeepEmbed: a learned per-token vector scaling this layer's output, so each token can
        # re-weight the channels of every block at the cost of one table lookup.
        self.enn = nn.Embedding(config.vocab_size, c) if config.deep_embed else None

    def forward(self, x: Tensor, xx: Tensor, idx: Tensor) -> Tensor:
        """x, xx = x_{t-1} - x_t: [..., C]; idx: the token ids [...] (used by DeepEmbed)."""
        out = self.value(relu_square(self.key(torch.addcmul(x, xx, self.x_k.view(-1)))))
        if self.enn is not None:
            out = out * self.enn(idx)
        return out


class Block(nn.Module):
    """Pre-norm residual block: x + att(ln1 x), then x + ffn(ln2 x); ln0 on layer 0 input.

    The residual wiring lives here once, in its two shapes: `forward` for a sequence (the
    token shift reads the previous position, the first one reads the carried state) and
    `step` for one token per sequence."""

    def __init__(self, config: RWKV7Config, layer_id: int) -> None:
        super().__init__()
        c = config.n_embd
        self.layer_id = layer_id
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(c)
        self.ln1 = nn.LayerNorm(c)
        self.ln2 = nn.LayerNorm(c)
        self.att = TimeMix(config, layer_id)
        self.ffn = ChannelMix(config)

    def forward(
        self,
        x: Tensor,
        st: LayerState,
        v_first: Tensor | None,
        idx: Tensor,
        pad: Padding | None = None,
        last_only: bool = False,
    ) -> tuple[Tensor, LayerState, Tensor]:
        """Sequence path: x [B,T,C], idx [B,T] -> (x [B,T,C], the layer's state after the
        last token (each row's last with `pad`), v_first [B,T,C]). With `last_only` the
        output x is the last token's alone, [B,1,C]."""
        if self.layer_id == 0:
            x = self.ln0(x)
        xa = self.ln1(x)
        dx, wkv, v_first = self.att(
            xa, st.att_shift, st.wkv, v_first, None if pad is None else pad.keep
        )
        x = x + dx
        xf = self.ln2(x)
        att_shift, ffn_shift = _last(xa, pad), _last(xf, pad)
        if last_only:
            # Only the last token's output is read: the channel mix runs on its row alone,
            # kept [B,1,C] so that it takes the sequence path's kernels like the others.
            xf_last, prev = ffn_shift[:, None], _last(_shifted(xf, st.ffn_shift), pad)[:, None]
            tok = _last(idx, pad)[:, None]  # [B,1]
            x = _last(x, pad)[:, None] + self.ffn(xf_last, prev - xf_last, tok)
        else:
            x = x + self.ffn(xf, _shifted(xf, st.ffn_shift) - xf, idx)
        out = LayerState(att_shift.to(st.att_shift.dtype), wkv, ffn_shift.to(st.ffn_shift.dtype))
        return x, out, v_first

    def step(
        self, x: Tensor, st: LayerState, v_first: Tensor | None, tok: Tensor, inplace: bool
    ) -> tuple[Tensor, LayerState, Tensor]:
        """One-token path: x [B,C], tok [B] -> (x [B,C], new layer state, v_first [B,C]).
        With `inplace` the given state's tensors are overwritten and returned."""
        if self.layer_id == 0:
            x = _layer_norm(self.ln0, x)
        xa = _layer_norm(self.ln1, x)
        dx, wkv, v_first = self.att.step(xa, st.att_shift, st.wkv, v_first, inplace)
        x = x + dx
        xf = _layer_norm(self.ln2, x)
        x = x + self.ffn(xf, st.ffn_shift.to(xf.dtype) - xf, tok)
        if inplace:
            st.att_shift.copy_(xa)
            st.ffn_shift.copy_(xf)
            return x, LayerState(st.att_shift, wkv, st.ffn_shift), v_first
        out = LayerState(xa.to(st.att_shift.dtype), wkv, xf.to(st.ffn_shift.dtype))
        return x, out, v_first


@dataclass(frozen=True)
class Padding:
    """Where the tokens of a right-padded batch end: row b holds lengths[b] tokens, then
    padding that the state never sees."""

    keep: Tensor  # [B,T,1] fp32: 1 for a token, 0 for padding
    last: Tensor  # [B] long: the position of each row's last token
    rows: Tensor  # [B] long: 0..B-1, to pick one position per row

    @classmethod
    def of(cls, lengths: Tensor, seq: int) -> Padding:
        """lengths [B] (each in 1..seq) for a batch of `seq` positions."""
        pos = torch.arange(seq, device=lengths.device)
        keep = (pos[None, :] < lengths[:, None]).to(torch.float32)[..., None]  # [B,T,1]
        rows = torch.arange(lengths.shape[0], device=lengths.device)
        return cls(keep, lengths.long() - 1, rows)


def _last(x: Tensor, pad: Padding | None) -> Tensor:
    """x [B,T,...] at each row's last token -> [B,...]."""
    return x[:, -1] if pad is None else x[pad.rows, pad.last]


def _shifted(x: Tensor, last: Tensor) -> Tensor:
    """x [B,T,C] moved one step later, with `last` [B,C] (the input before x[:, 0]) first."""
    return torch.cat([last.unsqueeze(1).to(x.dtype), x[:, :-1]], dim=1)


class RWKV7(nn.Module):
    """RWKV-7 language model over token ids."""

    def __init__(self, config: RWKV7Config, init_weights: bool = True) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("RWKV7 needs config.vocab_size (use config.with_vocab(n))")
        self.config = config
        self.emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_out = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.meta = ModelMeta()  # tokenizer and training summary, filled by checkpoints
        if init_weights:
            init_official_(self)

    # ------------------------------------------------------------------ paths

    def forward(self, idx: Tensor) -> Tensor:
        """idx [B,T] -> logits [B,T,V] (training path, zero initial state)."""
        return self._sequence(idx, None)[0]

    def prefill(
        self,
        idx: Tensor,
        state: RWKVState | None = None,
        *,
        lengths: Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[Tensor, RWKVState]:
        """idx [B,T] -> (logits [B,T,V], state after idx[:, -1]); chunk-parallel over T.

        With `lengths` [B], row b is its first lengths[b] tokens followed by padding: the
        state is the one after its last token, and its logits past that are meaningless.
        With `last_only`, the logits are those of each row's last token alone, [B,V] (the
        head and final norm then run on B rows instead of B*T)."""
        if state is not None and state.batch_size != idx.shape[0]:
            raise ValueError(f"state batch {state.batch_size} != idx batch {idx.shape[0]}")
        pad = None
        if lengths is not None:
            if not torch.jit.is_tracing() and (
                lengths.shape != idx.shape[:1]
                or bool((lengths < 1).any() | (lengths > idx.shape[1]).any())
            ):
                raise ValueError(f"lengths must be [B] in 1..{idx.shape[1]}, got {lengths}")
            pad = Padding.of(lengths, idx.shape[1])
        return self._sequence(idx, state, pad=pad, last_only=last_only)

    def step(
        self, tok: Tensor, state: RWKVState, inplace: bool = False
    ) -> tuple[Tensor, RWKVState]:
        """tok [B] -> (logits [B,V], new state). O(1) in the sequence length.

        With `inplace=True` the given state's tensors are overwritten and returned (no new
        state is allocated; for decoding loops under `torch.no_grad`/`inference_mode` that do
        not need the old state). Otherwise `state` is left untouched."""
        if tok.dim() != 1 or state.batch_size != tok.shape[0]:
            raise ValueError(f"step needs tok [B] matching the state batch {state.batch_size}")
        x = F.embedding(tok, self.emb.weight)  # [B,C]
        layers = []
        v_first = None
        for i, block in enumerate(self.blocks):
            x, st, v_first = block.step(x, state.layer(i), v_first, tok, inplace)
            layers.append(st)
        logits = self.head(_layer_norm(self.ln_out, x))
        return logits, state if inplace else RWKVState.from_layers(layers)

    def _sequence(
        self,
        idx: Tensor,
        state: RWKVState | None,
        *,
        pad: Padding | None = None,
        last_only: bool = False,
    ) -> tuple[Tensor, RWKVState]:
        bsz, seq = idx.shape
        if seq == 0:
            raise ValueError("idx must hold at least one token")
        fresh = state is None
        state = state or RWKVState.zeros(self.config, bsz, device=idx.device)
        x = self.emb(idx)  # [B,T,C]
        layers = []
        v_first = None
        for i, block in enumerate(self.blocks):
            st = state.layer(i)
            if fresh:  # no WKV state yet: the backends start from zeros without reading one
                st = LayerState(st.att_shift, None, st.ffn_shift)
            last_block = last_only and i == self.config.n_layer - 1
            x, st, v_first = block(x, st, v_first, idx, pad, last_block)
            layers.append(st)
        if last_only:
            x = x[:, 0]  # the last block gave the last token alone: [B,1,C] -> [B,C]
        logits = self.head(self.ln_out(x))
        return logits, RWKVState.from_layers(layers)

    # ------------------------------------------------------------------ export

    def official_state_dict(self) -> dict[str, Tensor]:
        """fp32 CPU tensors under the official RWKV-7 names and shapes."""
        return {
            name: t.detach().to("cpu", torch.float32).contiguous()
            for name, t in self.state_dict().items()
        }


def _layer_norm(ln: nn.LayerNorm, x: Tensor) -> Tensor:
    """`ln(x)` without the module-call overhead (it matters in the one-token path)."""
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
