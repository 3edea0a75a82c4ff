"""The recurrent state of an RWKV-7 model: everything needed to continue a sequence.

Letters: L layers, B batch, C width, H heads, N head size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import RWKV7Config

_FIELDS = ("att_shift", "wkv", "ffn_shift")


@dataclass
class LayerState:
    """One layer's share of the state (views of the `RWKVState` lists' tensors)."""

    att_shift: Tensor  # [B,C] last time-mix input (after ln1)
    wkv: Tensor | None  # [B,H,N,N] fp32; None before any token (the scan starts from zeros)
    ffn_shift: Tensor  # [B,C] last channel-mix input (after ln2)


@dataclass
class RWKVState:
    """Per-layer state as three lists with one tensor per layer.

    Lists rather than stacked [L, ...] tensors: a decoding step then builds the next state
    without copying every layer into a new stack (at batch 8 that copy costs as much as a
    layer's arithmetic). The WKV state is always fp32: it accumulates thousands of decayed
    rank-1 updates, which bf16 would lose (the same rule as BlinkDL's `rwkv` package)."""

    att_shift: list[Tensor]  # L x [B,C] last time-mix input (after ln1), for the token shift
    wkv: list[Tensor]  # L x [B,H,N,N] fp32, rows = value dim, cols = key dim
    ffn_shift: list[Tensor]  # L x [B,C] last channel-mix input (after ln2)

    @classmethod
    def zeros(
        cls,
        config: RWKV7Config,
        batch: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RWKVState:
        """The state before any token (all zeros)."""
        c, h, n = config.n_embd, config.n_head, config.head_size
        layers = range(config.n_layer)
        return cls(
            att_shift=[torch.zeros(batch, c, device=device, dtype=dtype) for _ in layers],
            wkv=[torch.zeros(batch, h, n, n, device=device) for _ in layers],
            ffn_shift=[torch.zeros(batch, c, device=device, dtype=dtype) for _ in layers],
        )

    @classmethod
    def from_layers(cls, layers: list[LayerState]) -> RWKVState:
        """The state of a model from its layers' states, in layer order."""
        return cls(*([getattr(st, name) for st in layers] for name in _FIELDS))

    def layer(self, i: int) -> LayerState:
        """Layer i's state (the same tensors, not copies)."""
        return LayerState(self.att_shift[i], self.wkv[i], self.ffn_shift[i])

    @property
    def batch_size(self) -> int:
        """B."""
        return self.att_shift[0].shape[0]

    @property
    def n_layer(self) -> int:
        """L."""
        return len(self.att_shift)

    def _map(self, fn) -> RWKVState:
        return RWKVState(*([fn(t) for t in getattr(self, name)] for name in _FIELDS))

    def clone(self) -> RWKVState:
        """Independent copy (decoding from it never touches the original)."""
        return self._map(torch.clone)

    def detach(self) -> RWKVState:
        """The same values cut from the autograd graph (truncated backpropagation)."""
        return self._map(torch.Tensor.detach)

    def expand(self, k: int) -> RWKVState:
        """Repeat every sequence k times along the batch: [b0, b0, .., b1, b1, ..].

        One prompt's state becomes the state of k candidates decoded as one batch."""
        if k < 1:
            raise ValueError(f"expand needs k >= 1, got {k}")
        return self._map(lambda t: t.repeat_interleave(k, dim=0))

    def select(self, index: Tensor | list[int]) -> RWKVState:
        """Keep (or reorder) batch rows, e.g. to drop finished candidates."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.att_shift[0].device)
        return self._map(lambda t: t.index_select(0, index))

    def to(self, device: torch.device | str) -> RWKVState:
        """Move to a device (dtypes unchanged: the WKV state stays fp32)."""
        return self._map(lambda t: t.to(device))

    def state_dict(self) -> dict[str, Tensor]:
        """Stacked plain tensors (for torch.save or safetensors):
        att_shift [L,B,C], wkv [L,B,H,N,N], ffn_shift [L,B,C]."""
        return {name: torch.stack(getattr(self, name)) for name in _FIELDS}

    @classmethod
    def from_state_dict(cls, data: dict[str, Tensor]) -> RWKVState:
        """Inverse of `state_dict`, with shape checks."""
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise ValueError(f"RWKVState is missing {missing}")
        att, wkv, ffn = (data[name] for name in _FIELDS)
        if att.dim() != 3 or ffn.shape != att.shape or wkv.dim() != 5:
            raise ValueError(
                f"RWKVState shapes do not fit: att_shift {tuple(att.shape)}, "
                f"wkv {tuple(wkv.shape)}, ffn_shift {tuple(ffn.shape)}"
            )
        if wkv.shape[:2] != att.shape[:2] or wkv.shape[2] * wkv.shape[3] != att.shape[2]:
            raise ValueError(
                f"RWKVState wkv {tuple(wkv.shape)} does not match att_shift {tuple(att.shape)}"
            )
        return cls(list(att.unbind(0)), list(wkv.float().unbind(0)), list(ffn.unbind(0)))
