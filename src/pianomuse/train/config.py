"""Training configuration: dataclass defaults < a named preset (YAML) < command-line values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pianomuse.errors import UserError

PRECISIONS = ("fp32", "bf16")
OBJECTIVES = ("lm", "completion")


@dataclass
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint."""

    data_path: str  # prepared folder, or a MIDI folder (prepared on the fly into output_dir)
    output_dir: str  # checkpoints, metrics.jsonl, loss.png
    preset: str | None = None  # name of a preset (tiny, small, base) the run started from
    pretrained_model: str | None = None  # RWKV-7 checkpoint to start from (.pth or .safetensors)
    # model (ignored when starting from a pretrained model, whose shape wins)
    n_layer: int = 2  # blocks
    n_embd: int = 64  # width C
    head_size: int = 32  # N, channels per head
    chunk_len: int = 32  # WKV chunk length L (32 measured fastest on CPU)
    wkv_backend: str = "auto"  # auto | chunked | reference | fla
    deep_embed: bool = False  # DeepEmbed per-token channel-mix scale
    # data
    max_seq_len: int = 256  # tokens per training window (model input length T)
    objective: str = "lm"  # lm: loss on every token; completion: loss on the completion only
    max_transpose: int = 0  # random transposition by up to ± this many semitones
    fim_rate: float = 0.25  # share of windows rearranged for fill-in-the-middle (measured best)
    # optimisation
    batch_size: int = 8  # windows per process per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    epochs: float = 1.0  # passes over the training windows (when max_steps is not set)
    max_steps: int | None = None  # optimizer steps; overrides epochs
    lr: float = 3e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 10  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW decay, on 2-D weight matrices only (RWKV-LM grouping)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.99  # AdamW beta2 (RWKV-LM uses 0.99)
    adam_eps: float = 1e-8  # AdamW epsilon
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    precision: str = "fp32"  # fp32 | bf16 (autocast; WKV state and decay stay fp32)
    seed: int = 0  # seeds the initialisation and the order of the data
    # bookkeeping
    eval_every: int = 25  # steps between validations
    eval_batches: int = 4  # validation batches per evaluation
    save_every: int = 25  # steps between `last` checkpoints
    log_every: int = 1  # steps between metrics.jsonl lines
    max_bad_steps: int = 5  # consecutive non-finite steps before the run stops
    resume: bool = False  # continue from output_dir/last.pt
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    tensorboard: bool = False  # also log to TensorBoard (extra `tensorboard`)

    def __post_init__(self) -> None:
        positive = ("n_layer", "n_embd", "head_size", "chunk_len", "max_seq_len", "batch_size")
        for name in (*positive, "grad_accum", "eval_every", "save_every", "log_every"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise UserError("--lr must be positive and --min-lr-ratio in [0, 1]")
        if self.max_steps is not None and self.max_steps <= 0:
            raise UserError("--max-steps must be positive")
        if self.epochs <= 0:
            raise UserError("--epochs must be positive")
        if not 0.0 <= self.fim_rate <= 1.0:
            raise UserError("--fim-rate must be in [0, 1]")
        if self.max_transpose < 0 or self.max_bad_steps <= 0:
            raise UserError("--max-transpose must be >= 0 and --max-bad-steps positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("pianomuse.presets").iterdir()
        if p.name.endswith(".yaml")
    )


def load_preset(name: str) -> dict[str, Any]:
    """A preset's fields: a bundled name (tiny, small, base) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    else:
        res = resources.files("pianomuse.presets") / f"{name}.yaml"
        if not res.is_file():
            raise UserError(
                f"unknown preset {name!r}; choose one of {', '.join(preset_names())} or a YAML file"
            )
        text = res.read_text()
    values = yaml.safe_load(text) or {}
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise UserError(f"preset {name!r} has unknown fields: {', '.join(sorted(unknown))}")
    return values


def make_config(overrides: dict[str, Any]) -> TrainConfig:
    """Defaults, then the preset named in `overrides`, then every non-None override."""
    values: dict[str, Any] = {}
    if overrides.get("preset"):
        values.update(load_preset(overrides["preset"]))
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(**values)
    except TypeError as e:
        raise UserError(str(e)) from None
