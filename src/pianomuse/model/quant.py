"""Int8 weights for inference on a CPU: a copy of the model whose projections read a quarter
of the bytes.

A one-token step is bound by reading the weights, not by arithmetic, so it reads them as int8.
Each output row keeps its own scale (symmetric, max |w| -> 127), as gpt-fast's weight-only int8
and llama.cpp's Q8_0 do.

A prefill's many rows are bound by arithmetic, where the int8 kernel (which widens every weight
for every row) loses to a bf16 matmul. So each projection also holds the same weights in bf16
(the int8 ones, rounded to bf16) for the sequence path ([B, T, C] inputs: training's forward and
the prefill) and keeps the int8 kernel for the one-token step ([B, C]). The kernel is chosen by
the path, not by the row count, so that a prefill gives the same numbers whether its tokens come
in one call or bar by bar (the live copilot).

Only the `nn.Linear` projections are quantised. Everything that the recurrence's numerics
depend on (the decay, its LoRA, GroupNorm, the WKV state) stays in fp32. Both kernels take
bf16 activations, so the rows entering and leaving a projection are rounded to bf16.

The twin is `Int8Linear.reference`: the same int8 weights multiplied in fp32 by `F.linear`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pianomuse.generate.engine import check_precision
from pianomuse.model.cache import CACHE_ATTR, cached_on, without_cache
from pianomuse.model.rwkv7 import RWKV7, ChannelMix
from pianomuse.model.state import RWKVState


class Int8Linear(nn.Module):
    """`nn.Linear` without bias whose weight [out, in] is int8 with one scale per row."""

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        # The dtype of the output (None: the input's). Both kernels round their output to
        # bf16, so a bf16 output holds the same numbers in half the bytes.
        self.out_dtype = out_dtype
        w = linear.weight.detach().float().cpu()
        # One scale per output row (clamped: an all-zero row must not divide by zero), rounded
        # to the bf16 the kernel takes *before* the weights are divided by it, so that every
        # weight stays within half a step of its int8 value times the scale actually used.
        scale = (w.abs().amax(dim=1).clamp_min(1e-12) / 127.0).to(torch.bfloat16)
        q = torch.round(w / scale.float()[:, None]).clamp(-127, 127)
        self.out_features, self.in_features = w.shape
        self.register_buffer("qweight", q.to(torch.int8))
        self.register_buffer("scale", scale)
        self.register_buffer("bf16_weight", self.dequantized().to(torch.bfloat16), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, in] (the step) or [B, T, in] (a sequence) -> [..., out] in `out_dtype` or
        x's: PyTorch's int8 weight-only kernel for the step's few rows, a bf16 matmul for a
        sequence's many."""
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # [..., in] -> [M, in]
        if x.dim() == 2:
            y = torch.ops.aten._weight_int8pack_mm(rows, self.qweight, self.scale)  # [M, out]
        else:
            y = F.linear(rows, self.bf16_weight)
        return y.view(*lead, self.out_features).to(self.out_dtype or x.dtype)

    def dequantized(self) -> Tensor:
        """The weight the int8 values and scales stand for, fp32 [out, in]."""
        return self.qweight.float() * self.scale.float()[:, None]

    def reference(self, x: Tensor) -> Tensor:
        """The plain twin: the same weight multiplied in fp32."""
        return F.linear(x, self.dequantized())


def quantize_int8(model: RWKV7) -> RWKV7:
    """A copy of `model` (on the CPU) whose every `nn.Linear` in the blocks is an
    `Int8Linear`; the model itself is left as it was. The head stays fp32: its logits are
    what sampling and the ranking of candidates read (both kernels round their output to
    bf16), and it is a small share of the weights.

    The channel mix's hidden layer ([B, T, 4C]) stays in bf16 from the key projection to the
    value projection: relu(x)^2 of a bf16 x is exact in fp32 and the value projection rounds
    its input to bf16 anyway, so the numbers are those of an fp32 detour (to the last bit,
    tested) without its two extra passes over the widest activation."""
    out = copy.deepcopy(model, without_cache(model)).cpu().eval()
    out.__dict__.pop(CACHE_ATTR, None)
    for module in list(out.blocks.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                hidden = isinstance(module, ChannelMix) and name == "key"
                setattr(module, name, Int8Linear(child, torch.bfloat16 if hidden else None))
    return out


def inference_model(model: RWKV7, precision: str) -> RWKV7:
    """The model that inference at `precision` runs: with "int8" on a CPU, its int8 copy
    (made once); the model itself for "fp32", on other devices, or where the int8 kernel
    does not run (another CPU, an older torch)."""
    check_precision(precision)
    if precision == "fp32" or next(model.parameters()).device.type != "cpu":
        return model

    def build() -> RWKV7:
        quant = quantize_int8(model)
        try:
            with torch.inference_mode():  # the kernel is tried once here, not mid-answer
                quant.step(torch.zeros(1, dtype=torch.long), RWKVState.zeros(quant.config, 1))
            return quant
        except Exception:  # noqa: BLE001 - no int8 kernel here: the fp32 model
            return model

    return cached_on(model, "int8", build)
