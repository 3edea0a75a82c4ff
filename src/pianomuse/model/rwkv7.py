"""RWKV-7 ("x070") language model: one definition, three execution paths.

* ``model(idx)``: logits for training, no state.
* ``model.prefill(idx, state)``: all logits and the state after the last token (chunk-parallel).
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
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import RWKV7Config
from .state import RWKVState
from .wkv import wkv7

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
        self.w0, self.a0, self.v0 = vec(), vec(), vec()
        self.w1 = nn.Parameter(torch.zeros(c, config.decay_lora))
        self.w2 = nn.Parameter(torch.zeros(config.decay_lora, c))
        self.a1 = nn.Parameter(torch.zeros(c, config.aaa_lora))
        self.a2 = nn.Parameter(torch.zeros(config.aaa_lora, c))
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

        Returns r, log-decay (fp32), k, v, a_wkv = -kk, b_wkv = kk * alpha, gate g, v_first."""
        h, n = self.n_head, self.head_size
        xr = x + xx * self.x_r.view(-1)
        xw = x + xx * self.x_w.view(-1)
        xk = x + xx * self.x_k.view(-1)
        xv = x + xx * self.x_v.view(-1)
        xa = x + xx * self.x_a.view(-1)
        xg = x + xx * self.x_g.view(-1)

        r = self.receptance(xr)
        k = self.key(xk)
        v = self.value(xv)
        # Decay in fp32 whatever autocast does: w0 is O(1..6) and bf16 would quantise the decay.
        z = self.w0.view(-1).float() + (torch.tanh(xw @ self.w1) @ self.w2).float()
        log_w = -_LOG_DECAY_SCALE * torch.sigmoid(z)
        if self.layer_id == 0:
            v_first = v
        else:
            # Value residual: blend toward layer 0's value (RWKV-7 paper, sec. "value residual").
            v = v + (v_first - v) * torch.sigmoid(self.v0.view(-1) + (xv @ self.v1) @ self.v2)
        alpha = torch.sigmoid(self.a0.view(-1) + (xa @ self.a1) @ self.a2)  # in-context lr
        g = torch.sigmoid(xg @ self.g1) @ self.g2

        lead = k.shape[:-1]
        kk = F.normalize((k * self.k_k.view(-1)).view(*lead, h, n), dim=-1, p=2.0, eps=1e-12)
        kk = kk.view(*lead, h * n)  # [..., C]
        k = k * (1 + (alpha - 1) * self.k_a.view(-1))
        return r, log_w, k, v, -kk, kk * alpha, g, v_first

    def _out(self, y: Tensor, r: Tensor, k: Tensor, v: Tensor, g: Tensor) -> Tensor:
        """GroupNorm per head, bonus term, gate and output projection; y, r, k, v, g [..., C]."""
        h, n = self.n_head, self.head_size
        lead = y.shape[:-1]
        # GroupNorm statistics in fp32: eps 64e-5 is tuned for fp32 and bf16 would skew them.
        y = self.ln_x(y.float().reshape(-1, h * n)).view(*lead, h * n)  # [.., C]
        rk = (r * k * self.r_k.view(-1)).view(*lead, h, n).sum(dim=-1, keepdim=True)  # [..,H,1]
        y = y + (rk * v.view(*lead, h, n)).view(*lead, h * n)
        return self.output(y * g)

    def forward(
        self, x: Tensor, shift: Tensor, state: Tensor | None, v_first: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sequence path. x [B,T,C], shift [B,C] (input before x[:,0]), state [B,H,N,N] or None.

        Returns (out [B,T,C], new shift [B,C], new state [B,H,N,N] fp32, v_first [B,T,C])."""
        bsz, seq, c = x.shape
        h, n = self.n_head, self.head_size
        prev = torch.cat([shift.unsqueeze(1).to(x.dtype), x[:, :-1]], dim=1)  # [B,T,C]
        r, log_w, k, v, a, b, g, v_first = self._mix(x, prev - x, v_first)

        def heads(t: Tensor) -> Tensor:
            return t.view(bsz, seq, h, n)  # [B,T,C] -> [B,T,H,N]

        y, state = wkv7(
            heads(r), heads(log_w), heads(k), heads(v), heads(a), heads(b), state,
            backend=self.config.wkv_backend, chunk_len=self.config.chunk_len,
        )  # fmt: skip
        out = self._out(y.reshape(bsz, seq, c), r, k, v, g)
        return out, x[:, -1], state, v_first

    def step(
        self, x: Tensor, shift: Tensor, state: Tensor, v_first: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One-token path. x [B,C], shift [B,C], state [B,H,N,N] fp32 -> same as `forward`."""
        bsz, c = x.shape
        h, n = self.n_head, self.head_size
        r, log_w, k, v, a, b, g, v_first = self._mix(x, shift.to(x.dtype) - x, v_first)
        # S <- S diag(w) + (S a) b^T + v k^T ; y = S r  (one step of the reference scan)
        r4, k4, v4, a4, b4 = (t.float().view(bsz, h, n, 1) for t in (r, k, v, a, b))
        decay = torch.exp(log_w).view(bsz, h, 1, n)
        state = torch.baddbmm(
            (state * decay).view(-1, n, n),
            torch.cat([state @ a4, v4], dim=-1).view(-1, n, 2),  # [(S a) | v]
            torch.cat([b4, k4], dim=-1).transpose(-1, -2).reshape(-1, 2, n),  # [b | k]^T
        ).view(bsz, h, n, n)
        y = (state @ r4).view(bsz, c).to(r.dtype)
        return self._out(y, r, k, v, g), x, state, v_first


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
        k = torch.relu(self.key(x + xx * self.x_k.view(-1))) ** 2
        out = self.value(k)
        if self.enn is not None:
            out = out * self.enn(idx)
        return out


class Block(nn.Module):
    """Pre-norm residual block: x + att(ln1 x), then x + ffn(ln2 x); ln0 on layer 0 input."""

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


class RWKV7(nn.Module):
    """RWKV-7 language model over token ids."""

    def __init__(self, config: RWKV7Config, init_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_out = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if init_weights:
            init_official_(self)

    # ------------------------------------------------------------------ paths

    def forward(self, idx: Tensor) -> Tensor:
        """idx [B,T] -> logits [B,T,V] (training path, zero initial state)."""
        return self._sequence(idx, None)[0]

    def prefill(self, idx: Tensor, state: RWKVState | None = None) -> tuple[Tensor, RWKVState]:
        """idx [B,T] -> (logits [B,T,V], state after idx[:, -1]); chunk-parallel over T."""
        if state is not None and state.batch_size != idx.shape[0]:
            raise ValueError(f"state batch {state.batch_size} != idx batch {idx.shape[0]}")
        return self._sequence(idx, state)

    def step(self, tok: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        """tok [B] -> (logits [B,V], new state). O(1) in the sequence length."""
        if tok.dim() != 1 or state.batch_size != tok.shape[0]:
            raise ValueError(f"step needs tok [B] matching the state batch {state.batch_size}")
        x = self.emb(tok)  # [B,C]
        att_shift, wkv_state, ffn_shift = [], [], []
        v_first = None
        for i, block in enumerate(self.blocks):
            if i == 0:
                x = block.ln0(x)
            xa = block.ln1(x)
            dx, _, s, v_first = block.att.step(xa, state.att_shift[i], state.wkv[i], v_first)
            x = x + dx
            xf = block.ln2(x)
            x = x + block.ffn(xf, state.ffn_shift[i].to(xf.dtype) - xf, tok)
            att_shift.append(xa)
            wkv_state.append(s)
            ffn_shift.append(xf)
        logits = self.head(self.ln_out(x))
        new_state = RWKVState(
            torch.stack(att_shift).to(state.att_shift.dtype),
            torch.stack(wkv_state),
            torch.stack(ffn_shift).to(state.ffn_shift.dtype),
        )
        return logits, new_state

    def _sequence(self, idx: Tensor, state: RWKVState | None) -> tuple[Tensor, RWKVState]:
        bsz, seq = idx.shape
        if seq == 0:
            raise ValueError("idx must hold at least one token")
        if state is None:
            state = RWKVState.zeros(self.config, bsz, device=idx.device)
            wkv_in: list[Tensor | None] = [None] * self.config.n_layer
        else:
            wkv_in = list(state.wkv.unbind(0))
        x = self.emb(idx)  # [B,T,C]
        att_shift, wkv_state, ffn_shift = [], [], []
        v_first = None
        for i, block in enumerate(self.blocks):
            if i == 0:
                x = block.ln0(x)
            xa = block.ln1(x)
            dx, last, s, v_first = block.att(xa, state.att_shift[i], wkv_in[i], v_first)
            x = x + dx
            xf = block.ln2(x)
            prev = torch.cat([state.ffn_shift[i].unsqueeze(1).to(xf.dtype), xf[:, :-1]], dim=1)
            x = x + block.ffn(xf, prev - xf, idx)
            att_shift.append(last)
            wkv_state.append(s)
            ffn_shift.append(xf[:, -1])
        logits = self.head(self.ln_out(x))
        new_state = RWKVState(
            torch.stack(att_shift).to(state.att_shift.dtype),
            torch.stack(wkv_state),
            torch.stack(ffn_shift).to(state.ffn_shift.dtype),
        )
        return logits, new_state

    # ------------------------------------------------------------------ export

    def official_state_dict(self) -> dict[str, Tensor]:
        """fp32 CPU tensors under the official RWKV-7 names and shapes."""
        return {
            name: t.detach().to("cpu", torch.float32).contiguous()
            for name, t in self.state_dict().items()
        }

    def save_official(self, path: str | Path) -> None:
        """Write a `.pth` in the official RWKV-7 layout (loadable by BlinkDL's `rwkv` package).

        Runtimes without DeepEmbed support ignore `ffn.enn.weight` and so give other logits for a
        model trained with `deep_embed=True`."""
        from .checkpoint import atomic_torch_save

        atomic_torch_save(self.official_state_dict(), Path(path))


# ---------------------------------------------------------------------- initialisation


def _ortho_(x: Tensor, scale: float) -> Tensor:
    """Orthogonal init with the official LoRA gain: sqrt(rows/cols) for tall matrices."""
    rows, cols = x.shape
    gain = math.sqrt(rows / cols) if rows > cols else 1.0
    return nn.init.orthogonal_(x, gain=gain * scale)


@torch.no_grad()
def _init_time_mix(att: TimeMix, layer_id: int, n_layer: int) -> None:
    c = att.x_r.shape[-1]
    n = att.head_size
    # The official ratio_0_to_1 divides by n_layer - 1; a one-layer model takes ratio 0.
    ratio_0_to_1 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0
    ratio_1_to_almost0 = 1.0 - layer_id / n_layer
    ddd = torch.arange(c, dtype=torch.float32) / c
    att.x_r.copy_((1.0 - ddd.pow(0.2 * ratio_1_to_almost0)).view(1, 1, c))
    att.x_w.copy_((1.0 - ddd.pow(0.9 * ratio_1_to_almost0)).view(1, 1, c))
    att.x_k.copy_((1.0 - ddd.pow(0.7 * ratio_1_to_almost0)).view(1, 1, c))
    att.x_v.copy_((1.0 - ddd.pow(0.7 * ratio_1_to_almost0)).view(1, 1, c))
    att.x_a.copy_((1.0 - ddd.pow(0.9 * ratio_1_to_almost0)).view(1, 1, c))
    att.x_g.copy_((1.0 - ddd.pow(0.2 * ratio_1_to_almost0)).view(1, 1, c))

    idx = torch.arange(c, dtype=torch.float32)
    linear = idx / max(c - 1, 1) - 0.5  # -0.5 .. 0.5 across the width
    half = max((n - 1) / 2, 0.5)
    zigzag = ((idx % n) - (n - 1) / 2) / half  # -1 .. 1 inside every head
    zigzag = zigzag * zigzag.abs()
    www = -6 + 6 * (idx / max(c - 1, 1)).pow(1 + ratio_0_to_1**0.3)
    # "+0.5 comes from F.softplus": w_raw = -softplus(-w0) - 0.5 starts near www.
    att.w0.copy_((www + 0.5 + zigzag * 2.5).view(1, 1, c))
    att.a0.copy_((-0.19 + zigzag * 0.3 + linear * 0.4).view(1, 1, c))
    att.v0.copy_((0.73 - linear * 0.4).view(1, 1, c))
    att.k_k.copy_((0.71 - linear * 0.1).view(1, 1, c))
    att.k_a.fill_(1.02)
    att.r_k.fill_(-0.04)
    # LoRA: the down-projection starts at zero, the up-projection orthogonal with scale 0.1,
    # so every LoRA is the identity offset at step 0 and only w1/a1/v1/g1 move first.
    for down, up in ((att.w1, att.w2), (att.a1, att.a2), (att.v1, att.v2), (att.g1, att.g2)):
        down.zero_()
        _ortho_(up, 0.1)
    # Linear weights as in RWKV-LM `generate_init_weight`: orthogonal gain 1, key 0.1,
    # output 0 (each block starts as the identity); ln_x weight ((1 + layer) / n_layer)^0.7.
    nn.init.orthogonal_(att.receptance.weight, gain=1.0)
    nn.init.orthogonal_(att.key.weight, gain=0.1)
    nn.init.orthogonal_(att.value.weight, gain=1.0)
    att.output.weight.zero_()
    att.ln_x.weight.fill_(((1 + layer_id) / n_layer) ** 0.7)
    att.ln_x.bias.zero_()


@torch.no_grad()
def _init_channel_mix(ffn: ChannelMix, layer_id: int, n_layer: int) -> None:
    c = ffn.x_k.shape[-1]
    ratio_1_to_almost0 = 1.0 - layer_id / n_layer
    ddd = torch.arange(c, dtype=torch.float32) / c
    ffn.x_k.copy_((1.0 - ddd.pow(ratio_1_to_almost0**4)).view(1, 1, c))
    nn.init.orthogonal_(ffn.key.weight, gain=1.0)
    ffn.value.weight.zero_()
    if ffn.enn is not None:
        ffn.enn.weight.fill_(1.0)  # DeepEmbed starts as the identity scaling


@torch.no_grad()
def init_embedding_and_head_(model: RWKV7) -> None:
    """Official init of the vocabulary-sized weights: tiny uniform embedding (ln0 rescales it),
    orthogonal head with gain 0.5 * sqrt(V / C) when V > C, else 0.5."""
    v, c = model.emb.weight.shape
    nn.init.uniform_(model.emb.weight, -1e-4, 1e-4)
    gain = 0.5 * math.sqrt(v / c) if v > c else 0.5
    nn.init.orthogonal_(model.head.weight, gain=gain)
    for block in model.blocks:
        if block.ffn.enn is not None:
            block.ffn.enn.weight.fill_(1.0)


@torch.no_grad()
def init_official_(model: RWKV7) -> None:
    """The RWKV-LM v7 initialisation (`RWKV-v7/train_temp/src/model.py`, RWKV_Tmix_x070 /
    RWKV_CMix_x070 `__init__` and `RWKV.generate_init_weight`): per-channel token-shift ramps
    depending on depth, the w0 decay ramp with a per-head zigzag, zero-init LoRA down
    projections, orthogonal projections, zeroed output and FFN value weights."""
    n_layer = model.config.n_layer
    for i, block in enumerate(model.blocks):
        for ln in (block.ln1, block.ln2) + ((block.ln0,) if i == 0 else ()):
            nn.init.ones_(ln.weight)
            nn.init.zeros_(ln.bias)
        _init_time_mix(block.att, i, n_layer)
        _init_channel_mix(block.ffn, i, n_layer)
    nn.init.ones_(model.ln_out.weight)
    nn.init.zeros_(model.ln_out.bias)
    init_embedding_and_head_(model)
