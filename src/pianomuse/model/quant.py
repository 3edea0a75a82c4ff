"""Int8 weights for decoding on a CPU: a copy of the model whose projections read a quarter
of the bytes.

One token at batch 1 multiplies a single row by every weight matrix, so its cost is reading
the weights (19 MB in fp32 for the 6 x 256 model) from memory, not the arithmetic: measured
here, the fp32 matmuls alone take 2.6 ms a token and the same matmuls with int8 weights
0.4 ms. Each output row of a weight keeps its own scale (symmetric, max |w| -> 127), the
scheme of weight-only int8 in gpt-fast and of llama.cpp's Q8_0, which changes a language
model's loss by a fraction of a percent (ours: see `benchmarks/model_speed.py`).

Only the `nn.Linear` projections are quantised. Everything that the recurrence's numerics
depend on (the decay, its LoRA, GroupNorm, the WKV state) stays in fp32. The kernel takes
bf16 activations, so the rows entering and leaving a projection are rounded to bf16.

The twin is `Int8Linear.reference`: the same int8 weights multiplied in fp32 by `F.linear`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pianomuse.model.rwkv7 import RWKV7

PRECISIONS = ("fp32", "int8")  # weights of the one-token step on a CPU
DEFAULT_PRECISION = "int8"  # the loss moves < 0.5 % (model_speed.py), decoding 2-3x faster


class Int8Linear(nn.Module):
    """`nn.Linear` without bias whose weight [out, in] is int8 with one scale per row."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float().cpu()
        # One scale per output row (clamped: an all-zero row must not divide by zero), rounded
        # to the bf16 the kernel takes *before* the weights are divided by it, so that every
        # weight stays within half a step of its int8 value times the scale actually used.
        scale = (w.abs().amax(dim=1).clamp_min(1e-12) / 127.0).to(torch.bfloat16)
        q = torch.round(w / scale.float()[:, None]).clamp(-127, 127)
        self.out_features, self.in_features = w.shape
        self.register_buffer("qweight", q.to(torch.int8))
        self.register_buffer("scale", scale)

    def forward(self, x: Tensor) -> Tensor:
        """x [..., in] fp32 -> [..., out] fp32 through PyTorch's int8 weight-only kernel."""
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # [..., in] -> [M, in]
        y = torch.ops.aten._weight_int8pack_mm(rows, self.qweight, self.scale)  # [M, out]
        return y.view(*lead, self.out_features).to(x.dtype)

    def dequantized(self) -> Tensor:
        """The weight the int8 values and scales stand for, fp32 [out, in]."""
        return self.qweight.float() * self.scale.float()[:, None]

    def reference(self, x: Tensor) -> Tensor:
        """The plain twin: the same weight multiplied in fp32."""
        return F.linear(x, self.dequantized())


def quantize_int8(model: RWKV7) -> RWKV7:
    """A copy of `model` (on the CPU) whose every `nn.Linear` is an `Int8Linear`; the model
    itself is left as it was."""
    out = copy.deepcopy(model).cpu().eval()
    for module in list(out.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear(child))
    return out


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision
