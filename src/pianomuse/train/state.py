"""Training checkpoints: everything needed to continue a run exactly, written atomically.

`last.pt` / `best.pt` hold the model, optimizer, scheduler, RNG states, the data position and
both configs, as plain tensors and containers (loadable with `weights_only=True`). Beside each
goes a `.safetensors` model file that `pianomuse.load_model` and the copilot read.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianomuse.atomic import atomic_write
from pianomuse.errors import UserError


def rng_state() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save through `atomic_write`: a run killed mid-write keeps the previous
    checkpoint intact."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_training_state(path: Path) -> dict[str, Any]:
    """A checkpoint written by `save_atomic`; anything else is one line (`UserError`)."""
    what = f"--resume: {path}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{what} holds Python objects other than tensors (refused: unpickling them could "
            "run code); it was not written by pianomuse train"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        # EOFError (an empty file) must not reach the command line, which takes it for Ctrl-D.
        why = "it is empty" if path.stat().st_size == 0 else f"{type(e).__name__}"
        raise UserError(f"{what} is damaged or not a training checkpoint ({why})") from None
    missing = {"model", "optimizer", "scheduler", "step", "position", "rng"} - set(state)
    if not isinstance(state, dict) or missing:
        raise UserError(f"{what} is not a training checkpoint of pianomuse train")
    return state
