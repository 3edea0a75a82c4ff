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
class RWKVState:
    """Per-layer state, stacked over layers.

    The WKV state is always fp32: it accumulates thousands of decayed rank-1 updates and bf16
    would lose the slow-decaying channels (the same rule as BlinkDL's `rwkv` package)."""

    att_shift: Tensor  # [L,B,C] last time-mix input (after ln1), for the token shift
    wkv: Tensor  # [L,B,H,N,N] fp32, rows = value dim, cols = key dim
    ffn_shift: Tensor  # [L,B,C] last channel-mix input (after ln2)

    @classmethod
    def zeros(
        cls,
        config: RWKV7Config,
        batch: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RWKVState:
        """The state before any token (all zeros)."""
        n_layer, c = config.n_layer, config.n_embd
        h, n = config.n_head, config.head_size
        return cls(
            att_shift=torch.zeros(n_layer, batch, c, device=device, dtype=dtype),
            wkv=torch.zeros(n_layer, batch, h, n, n, device=device, dtype=torch.float32),
            ffn_shift=torch.zeros(n_layer, batch, c, device=device, dtype=dtype),
        )

    @property
    def batch_size(self) -> int:
        """B."""
        return self.att_shift.shape[1]

    @property
    def n_layer(self) -> int:
        """L."""
        return self.att_shift.shape[0]

    def clone(self) -> RWKVState:
        """Independent copy (decoding updates never touch the original)."""
        return RWKVState(self.att_shift.clone(), self.wkv.clone(), self.ffn_shift.clone())

    def expand(self, k: int) -> RWKVState:
        """Repeat every sequence k times along the batch: [b0, b0, .., b1, b1, ..].

        One prompt's state becomes the state of k candidates decoded as one batch."""
        if k < 1:
            raise ValueError(f"expand needs k >= 1, got {k}")
        return RWKVState(
            self.att_shift.repeat_interleave(k, dim=1),
            self.wkv.repeat_interleave(k, dim=1),
            self.ffn_shift.repeat_interleave(k, dim=1),
        )

    def select(self, index: Tensor | list[int]) -> RWKVState:
        """Keep (or reorder) batch rows, e.g. to drop finished candidates."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.att_shift.device)
        return RWKVState(
            self.att_shift.index_select(1, index),
            self.wkv.index_select(1, index),
            self.ffn_shift.index_select(1, index),
        )

    def to(self, device: torch.device | str) -> RWKVState:
        """Move to a device; the WKV state stays fp32."""
        return RWKVState(self.att_shift.to(device), self.wkv.to(device), self.ffn_shift.to(device))

    def state_dict(self) -> dict[str, Tensor]:
        """Plain tensors (for torch.save or safetensors)."""
        return {name: getattr(self, name) for name in _FIELDS}

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
        return cls(att, wkv.float(), ffn)
