"""The official RWKV-7 initialisation (RWKV-LM's `RWKV-v7/train_temp/src/model.py`), for
models trained from scratch here."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .rwkv7 import RWKV7, ChannelMix, TimeMix


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
    if layer_id > 0:
        att.v0.copy_((0.73 - linear * 0.4).view(1, 1, c))
    att.k_k.copy_((0.71 - linear * 0.1).view(1, 1, c))
    att.k_a.fill_(1.02)
    att.r_k.fill_(-0.04)
    # LoRA: the down-projection starts at zero, the up-projection orthogonal with scale 0.1,
    # so every LoRA is the identity offset at step 0 and only w1/a1/v1/g1 move first.
    loras = [(att.w1, att.w2), (att.a1, att.a2), (att.g1, att.g2)]
    if layer_id > 0:
        loras.append((att.v1, att.v2))
    for down, up in loras:
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
