"""RWKV-7 ("x070") model: definition, WKV kernels, state and checkpoints."""

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model,
    reinit_vocab,
    save_model,
)
from .config import RWKV7Config
from .rwkv7 import RWKV7
from .state import RWKVState

__all__ = [
    "RWKV7",
    "Checkpoint",
    "CheckpointError",
    "RWKV7Config",
    "RWKVState",
    "load_checkpoint",
    "load_model",
    "reinit_vocab",
    "save_model",
]
