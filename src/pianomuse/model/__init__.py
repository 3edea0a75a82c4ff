"""RWKV-7 ("x070") model: definition, WKV kernels, state and checkpoints."""

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model,
    read_config,
    reinit_vocab,
    save_model,
    save_official,
)
from .config import ModelMeta, RWKV7Config, TrainingSummary
from .rwkv7 import RWKV7
from .state import RWKVState

__all__ = [
    "RWKV7",
    "Checkpoint",
    "CheckpointError",
    "ModelMeta",
    "RWKV7Config",
    "RWKVState",
    "load_checkpoint",
    "load_model",
    "read_config",
    "reinit_vocab",
    "save_model",
    "save_official",
    "TrainingSummary",
]
