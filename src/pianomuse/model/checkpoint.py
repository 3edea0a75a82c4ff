"""Loading and saving RWKV-7 checkpoints.

Two formats are read, recognised by their first bytes (not by the file name):

* official RWKV-7 `.pth` state dicts (RWKV-LM, BlinkDL's releases, `save_official`),
  read with `torch.load(weights_only=True)` so a pickle can never run code; the config is
  inferred from the tensor shapes;
* this project's safetensors files, whose metadata holds the model config (JSON) and optionally
  the tokenizer config (JSON) and the tokenizer hash.

Every failure is a `CheckpointError` with one message naming the file and the problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pianomuse.atomic import atomic_write
from pianomuse.errors import UserError

from .config import ModelMeta, RWKV7Config, TrainingSummary
from .memory import available_memory, estimate_memory
from .rwkv7 import RWKV7

FORMAT_NAME = "pianomuse-rwkv7"
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")
# Value-residual weights of layer 0: some official checkpoints carry them though layer 0 never
# uses them; they are dropped on load (the model has none there).
_UNUSED_LAYER0 = ("blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2")


class CheckpointError(UserError, ValueError):
    """A file that is not a usable RWKV-7 checkpoint."""


@dataclass
class Checkpoint:
    """A loaded model (carrying its `meta`) and the format it came from."""

    model: RWKV7
    source_format: str  # "official" or "pianomuse"

    @property
    def tokenizer_config(self) -> dict[str, Any] | None:
        return self.model.meta.tokenizer_config

    @property
    def tokenizer_hash(self) -> str | None:
        return self.model.meta.tokenizer_hash

    @property
    def training(self) -> TrainingSummary | None:
        return self.model.meta.training


# ---------------------------------------------------------------------- writing


def save_model(
    model: RWKV7,
    path: str | Path,
    tokenizer_config: Mapping[str, Any] | None = None,
    tokenizer_hash: str | None = None,
    training: TrainingSummary | None = None,
) -> None:
    """Save weights and config, with the tokenizer's config and hash and the training
    summary (each defaults to what `model.meta` holds), as one safetensors file."""
    from safetensors.torch import save_file

    meta = model.meta
    tokenizer_config = tokenizer_config if tokenizer_config is not None else meta.tokenizer_config
    tokenizer_hash = tokenizer_hash or meta.tokenizer_hash
    training = training or meta.training
    tensors = {
        name: t.detach().to("cpu").contiguous().clone() for name, t in model.state_dict().items()
    }
    metadata = {"format": FORMAT_NAME, "model_config": json.dumps(model.config.to_dict())}
    if tokenizer_config is not None:
        metadata["tokenizer_config"] = json.dumps(dict(tokenizer_config), sort_keys=True)
    if tokenizer_hash is not None:
        metadata["tokenizer_hash"] = str(tokenizer_hash)
    if training is not None:
        metadata["training"] = json.dumps(dataclasses.asdict(training), sort_keys=True)
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def save_official(model: RWKV7, path: str | Path) -> None:
    """Write a `.pth` in the official RWKV-7 layout (loadable by BlinkDL's `rwkv` package).

    Runtimes without DeepEmbed support ignore `ffn.enn.weight` and so give other logits for a
    model trained with `deep_embed=True`."""
    sd = model.official_state_dict()
    atomic_write(Path(path), lambda tmp: torch.save(sd, tmp))


# ---------------------------------------------------------------------- reading


def _sniff(path: Path) -> str:
    """'safetensors', 'torch' (zip or legacy pickle) or 'unknown', from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors first: its 8-byte header length may itself begin with b"PK" or 0x80.
    if len(head) == 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 0 < header_len < 100_000_000:
            return "safetensors"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "torch"
    return "unknown"


def config_from_official(sd: Mapping[str, Tensor]) -> RWKV7Config:
    """Infer the config of an official RWKV-7 state dict from its tensor shapes."""
    required = ["emb.weight", "blocks.0.ffn.key.weight"]
    required += [f"blocks.0.att.{name}" for name in ("r_k", "w1", "a1", "g1")]
    for key in required:
        if key not in sd:
            raise CheckpointError(f"missing key {key!r}: not an RWKV-7 (x070) state dict")
        if sd[key].dim() != 2:
            raise CheckpointError(f"{key} has shape {tuple(sd[key].shape)}, expected 2-D")
    layers = {int(m.group(1)) for key in sd if (m := _BLOCK_KEY.match(key))}
    n_layer = max(layers) + 1
    if layers != set(range(n_layer)):
        raise CheckpointError(f"block indices are not contiguous: {sorted(layers)}")
    vocab, n_embd = sd["emb.weight"].shape
    n_head, head_size = sd["blocks.0.att.r_k"].shape  # r_k is (H, N)
    if n_head * head_size != n_embd:
        raise CheckpointError(f"r_k {n_head}x{head_size} does not match width {n_embd}")
    v1 = next((sd[k] for k in ("blocks.1.att.v1", "blocks.0.att.v1") if k in sd), None)
    try:
        return RWKV7Config(
            vocab_size=int(vocab),
            n_layer=n_layer,
            n_embd=int(n_embd),
            head_size=int(head_size),
            decay_lora=int(sd["blocks.0.att.w1"].shape[1]),
            aaa_lora=int(sd["blocks.0.att.a1"].shape[1]),
            mv_lora=None if v1 is None else int(v1.shape[-1]),
            gate_lora=int(sd["blocks.0.att.g1"].shape[1]),
            ffn_mult=sd["blocks.0.ffn.key.weight"].shape[0] / n_embd,
            deep_embed="blocks.0.ffn.enn.weight" in sd,
        )
    except ValueError as err:
        raise CheckpointError(f"inconsistent sizes: {err}") from err


def _check_tensors(sd: Mapping[Any, Any], values: bool = True) -> None:
    """Named floating-point tensors (and, with `values`, finite ones: this reads them)."""
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"expected a dict of tensors, found {type(sd).__name__}")
    bad = [k for k, t in sd.items() if not (isinstance(k, str) and isinstance(t, Tensor))]
    if bad:
        raise CheckpointError(f"entries that are not named tensors: {bad[:5]}")
    not_float = [k for k, t in sd.items() if not t.is_floating_point()]
    if not_float:
        raise CheckpointError(f"non-floating-point tensors: {not_float[:5]}")
    if not values:
        return
    non_finite = [k for k, t in sd.items() if not bool(torch.isfinite(t).all())]
    if non_finite:
        raise CheckpointError(f"tensors with NaN or infinity: {non_finite[:5]}")


def load_state_into(model: RWKV7, sd: Mapping[str, Tensor]) -> None:
    """Copy tensors into the model with strict name and shape checks (CheckpointError)."""
    _check_tensors(sd)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            more = " ..." if len(unexpected) > 5 else ""
            parts.append(f"unexpected keys {unexpected[:5]}{more}")
        raise CheckpointError("; ".join(parts))
    with torch.no_grad():
        for name, target in own.items():
            t = sd[name]
            # Accept squeezed copies of the (1, 1, C) vectors that some converters write.
            if t.shape != target.shape and t.squeeze().shape != target.squeeze().shape:
                raise CheckpointError(
                    f"{name} has shape {tuple(t.shape)}, expected {tuple(target.shape)}"
                )
            target.copy_(t.reshape(target.shape).to(target.dtype))


def check_fits(config: RWKV7Config, file_bytes: int) -> None:
    """Refuse a config before its model is allocated: its weights must be in the file (at
    2 bytes a weight at least, bf16) and fit in the memory this machine has."""
    try:
        weights = config.n_params()
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"inconsistent sizes: {err}") from err
    if weights * 2 > file_bytes:
        raise CheckpointError(
            f"its config describes {weights / 1e6:,.1f} M weights, more than a file of "
            f"{_size(file_bytes)} can hold"
        )
    need = estimate_memory(config, 1, 1, training=False).total
    have = available_memory()
    if have is not None and need > have:
        raise CheckpointError(
            f"the model needs {_size(need)} of memory; this machine has {_size(have)} free"
        )


def _size(n: float) -> str:
    """Bytes for people: 400 bytes, 7.0 kB, 21.7 MB, 154.6 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} bytes"


def _load_official(path: Path, map_location: str | torch.device) -> Checkpoint:
    try:
        # Memory-mapped: the config is checked before the tensors are read into memory.
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            "holds Python objects other than tensors (refused: unpickling them could run code)"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        first = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else ""
        message = f"not a readable PyTorch checkpoint ({first or type(err).__name__})"
        raise CheckpointError(message) from err
    _check_tensors(sd, values=False)  # names and types only: nothing is read yet
    config = config_from_official(sd)
    check_fits(config, path.stat().st_size)
    model = RWKV7(config, init_weights=False)
    load_state_into(model, {k: t for k, t in sd.items() if k not in _UNUSED_LAYER0})
    return Checkpoint(model.to(map_location), "official")


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, read from its JSON header alone (the format:
    an 8-byte little-endian length, then the JSON). `safe_open` would first map the whole
    file, which a hostile file can make fail, or make large."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 100_000_000:
                raise CheckpointError("unreadable safetensors header")
            header = json.loads(f.read(size))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"unreadable safetensors header ({err})") from err
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise CheckpointError("unreadable safetensors header")
    return metadata


def _load_safetensors(path: Path, map_location: str | torch.device) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    metadata = _safetensors_metadata(path)
    config = _config_of(metadata)
    check_fits(config, path.stat().st_size)  # before the file is mapped or a tensor read
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            sd = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"unreadable safetensors file: {first}") from err
    try:
        tok_cfg = metadata.get("tokenizer_config")
        training = metadata.get("training")
        meta = ModelMeta(
            tokenizer_config=None if tok_cfg is None else json.loads(tok_cfg),
            tokenizer_hash=metadata.get("tokenizer_hash"),
            training=None if training is None else TrainingSummary.from_dict(json.loads(training)),
        )
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"bad config metadata: {err}") from err
    model = RWKV7(config, init_weights=False)
    load_state_into(model, sd)
    model.meta = meta
    return Checkpoint(model.to(map_location), "pianomuse")


def _config_of(metadata: dict[str, str]) -> RWKV7Config:
    """The model config stored in a safetensors file's metadata."""
    if "model_config" not in metadata:
        raise CheckpointError("safetensors file without 'model_config' metadata")
    try:
        return RWKV7Config.from_dict(json.loads(metadata["model_config"]))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"bad config metadata: {err}") from err


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load an official RWKV-7 `.pth` or a project safetensors file (see module docstring);
    the weights are read on the CPU, checked, then the model is moved to `map_location`."""
    path = Path(path)
    try:
        kind = _sniff(path)
        if kind == "torch":
            return _load_official(path, map_location)
        if kind == "safetensors":
            return _load_safetensors(path, map_location)
        raise CheckpointError("neither a PyTorch .pth nor a safetensors file")
    except CheckpointError as err:
        raise CheckpointError(f"bad checkpoint {path}: {err}") from err
    except OSError as err:
        raise CheckpointError(f"bad checkpoint {path}: {err.strerror or err}") from err


def read_config(path: str | Path) -> RWKV7Config:
    """The config of a checkpoint without loading its weights (a safetensors file's metadata,
    or the shapes of a memory-mapped `.pth`), so a model's size can be checked first."""
    path = Path(path)
    try:
        kind = _sniff(path)
        if kind == "safetensors":
            return _config_of(_safetensors_metadata(path))
        if kind == "torch":
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
                raise CheckpointError(f"not a readable PyTorch checkpoint ({err})") from err
            _check_tensors(sd, values=False)
            return config_from_official(sd)
        raise CheckpointError("neither a PyTorch .pth nor a safetensors file")
    except CheckpointError as err:
        raise CheckpointError(f"bad checkpoint {path}: {err}") from err
    except OSError as err:
        raise CheckpointError(f"bad checkpoint {path}: {err.strerror or err}") from err


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> RWKV7:
    """The model of `load_checkpoint`, with fp32 weights and its `meta` (tokenizer, training
    summary), so `Copilot(load_model(path))` works like `Copilot(path)`."""
    return load_checkpoint(path, map_location).model


# ---------------------------------------------------------------------- vocabulary change


def _fresh_vocab_tensors(vocab: int, n_embd: int) -> tuple[Tensor, Tensor]:
    """New embedding and head with the official init (see `init_embedding_and_head_`)."""
    emb = torch.empty(vocab, n_embd).uniform_(-1e-4, 1e-4)
    gain = 0.5 * math.sqrt(vocab / n_embd) if vocab > n_embd else 0.5
    head = torch.nn.init.orthogonal_(torch.empty(vocab, n_embd), gain=gain)
    return emb, head


def reinit_vocab(model_or_state: RWKV7 | dict[str, Tensor], new_vocab: int) -> Any:
    """Keep every block of a pretrained RWKV-7 and re-initialise the vocabulary-sized weights
    (embedding, head, DeepEmbed tables) for `new_vocab` tokens.

    Takes a model (changed in place and returned) or an official state dict (a new dict is
    returned). The time-mix and channel-mix weights carry over, which is the point: they hold
    what the pretrained model learned about sequences."""
    if new_vocab <= 0:
        raise ValueError(f"new_vocab must be positive, got {new_vocab}")
    if isinstance(model_or_state, RWKV7):
        model = model_or_state
        config = dataclasses.replace(model.config, vocab_size=new_vocab)
        device = model.emb.weight.device
        dtype = model.emb.weight.dtype
        emb, head = _fresh_vocab_tensors(new_vocab, config.n_embd)
        model.emb = torch.nn.Embedding(new_vocab, config.n_embd).to(device, dtype)
        model.head = torch.nn.Linear(config.n_embd, new_vocab, bias=False).to(device, dtype)
        with torch.no_grad():
            model.emb.weight.copy_(emb)
            model.head.weight.copy_(head)
            for block in model.blocks:
                if block.ffn.enn is not None:
                    block.ffn.enn = torch.nn.Embedding(new_vocab, config.n_embd).to(device, dtype)
                    block.ffn.enn.weight.fill_(1.0)
        model.config.vocab_size = config.vocab_size  # shared by every submodule
        return model
    sd = dict(model_or_state)
    _check_tensors(sd)
    if "emb.weight" not in sd:
        raise CheckpointError("state dict without emb.weight")
    n_embd = sd["emb.weight"].shape[1]
    sd["emb.weight"], sd["head.weight"] = _fresh_vocab_tensors(new_vocab, n_embd)
    for key in [k for k in sd if k.endswith(".ffn.enn.weight")]:
        sd[key] = torch.ones(new_vocab, n_embd)
    return sd
