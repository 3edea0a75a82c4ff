"""What inference keeps on a model (an int8 copy, traced graphs, kept prefills): built once per
model and key, outside its state dict, and dropped when its weights change."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

T = TypeVar("T")
CACHE_ATTR = "_inference_cache"  # the model's attribute that holds them


def cached_on(model: nn.Module, key: str, build: Callable[[], T]) -> T:
    """`build()` once per model and key until the model's weights change: in-place updates
    (an optimizer step, a load) bump a tensor's version and a replaced parameter is another
    tensor, so a copy or graph of older weights is never used."""
    version = tuple((id(p), p._version) for p in model.parameters())
    cache = model.__dict__.setdefault(CACHE_ATTR, {})
    if key not in cache or cache[key][0] != version:
        cache[key] = (version, build())
    return cache[key][1]


def without_cache(model: nn.Module) -> dict[int, dict]:
    """A `copy.deepcopy` memo that gives the copy an empty cache in place of the model's
    (graphs, copies and locks cannot, and need not, be copied)."""
    cache = model.__dict__.get(CACHE_ATTR)
    return {} if cache is None else {id(cache): {}}
