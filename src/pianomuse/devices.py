"""Where a model runs: a device name from the user, checked against this machine."""

from __future__ import annotations

import re

import torch

from pianomuse.errors import FieldError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else the CPU), `cpu`, `cuda` or `cuda:N`, as a device this
    machine has; anything else is one line naming the setting."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise FieldError("device", f"must be auto, cpu, cuda or cuda:N, not {name!r}")
    if not torch.cuda.is_available():
        raise FieldError("device", f"{name}: this machine has no CUDA device")
    if m[1] is not None and int(m[1]) >= torch.cuda.device_count():
        raise FieldError("device", f"{name}: this machine has {torch.cuda.device_count()}")
    return torch.device(name)
