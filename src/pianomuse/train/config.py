"""Training configuration: dataclass defaults < a named preset (YAML) < command-line values.

The training config holds the model's config (`TrainConfig.model`, an `RWKV7Config` whose
vocabulary is set by the data's tokenizer); presets and the command line name the model's
fields flat (`n_layer: 6`, `--n-layer 6`) or, in a preset, under `model:`. Everything is
validated here, before any data is read.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pianomuse.devices import resolve_device
from pianomuse.errors import FieldError, UserError
from pianomuse.limits import MAX_SEED
from pianomuse.model.config import RWKV7Config
from pianomuse.model.wkv import fla_available

PRECISIONS = ("fp32", "bf16")
DEFAULT_MODEL = {"n_layer": 2, "n_embd": 64, "head_size": 32}  # the tiny preset's shape
OBJECTIVES = ("lm", "completion")


@dataclass
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint."""

    data_path: str  # prepared folder, or a MIDI folder (prepared on the fly into output_dir)
    output_dir: str  # checkpoints, metrics.jsonl, loss.png
    preset: str | None = None  # name of a preset (tiny, small, base) the run started from
    pretrained_model: str | None = None  # RWKV-7 checkpoint to start from (.pth or .safetensors)
    # the model to train (its shape is ignored with a pretrained model, whose shape wins;
    # chunk_len and wkv_backend apply to it too)
    model: RWKV7Config = field(default_factory=lambda: _model_config(DEFAULT_MODEL))
    # data
    max_seq_len: int = 256  # tokens per training window (model input length T)
    objective: str = "lm"  # lm: loss on every token; completion: loss on the completion only
    max_transpose: int = 0  # random transposition by up to ± this many semitones
    fim_rate: float = 0.25  # share rearranged for fill-in-the-middle (best infill for its cost)
    part_rate: float = 0.0  # share rearranged for part infilling (tokenizer v2 data with parts)
    plain_rate: float = 0.0  # share read as plain piano: parts merged, chords recognised (v2)
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
    compile_model: bool = False  # torch.compile the training forward (CPU: needs a C++ compiler)
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
        if isinstance(self.model, dict):  # read back from a checkpoint or metrics file
            self.model = _model_config(self.model)
        positive = ("max_seq_len", "batch_size", "grad_accum", "eval_every", "save_every")
        for name in (*positive, "log_every"):
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
        for name in ("fim_rate", "part_rate", "plain_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1]")
        if self.fim_rate + self.part_rate > 1.0:
            raise UserError("--fim-rate and --part-rate add up to more than 1")
        if self.max_transpose < 0 or self.max_bad_steps <= 0:
            raise UserError("--max-transpose must be >= 0 and --max-bad-steps positive")
        if not 0 <= self.seed <= MAX_SEED:
            raise FieldError("seed", f"must be in 0..{MAX_SEED}")
        on_cuda = resolve_device(self.device).type == "cuda"
        if (
            self.compile_model
            and not on_cuda
            and not any(shutil.which(c) for c in ("g++", "clang++", "c++"))
        ):
            raise UserError("--compile on a CPU needs a C++ compiler (g++ or clang++)")
        if self.model.wkv_backend == "fla" and not (on_cuda and fla_available()):
            raise UserError("--wkv-backend fla needs a CUDA device and flash-linear-attention")
        if self.pretrained_model is not None and not Path(self.pretrained_model).is_file():
            raise UserError(f"--pretrained-model {self.pretrained_model}: no such file")

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
    known = {f.name for f in fields(TrainConfig)} | set(MODEL_FIELDS)
    unknown = set(values) - known
    if unknown:
        raise UserError(f"preset {name!r} has unknown fields: {', '.join(sorted(unknown))}")
    return values


MODEL_FIELDS = tuple(f.name for f in fields(RWKV7Config) if f.name != "vocab_size")


def _model_config(values: dict[str, Any]) -> RWKV7Config:
    """An `RWKV7Config` without its vocabulary, from model fields; one-line errors."""
    unknown = set(values) - set(MODEL_FIELDS) - {"vocab_size"}
    if unknown:
        raise UserError(f"unknown model fields: {', '.join(sorted(unknown))}")
    try:
        return RWKV7Config(**{"vocab_size": None, **values})
    except (TypeError, ValueError) as e:
        # "RWKV7Config.n_layer must ..." -> "--n-layer must ...": name the option the user set.
        msg = re.sub(r"^(?:RWKV7Config\.)?(\w+)", lambda m: "--" + m[1].replace("_", "-"), str(e))
        raise UserError(msg) from None


def make_config(overrides: dict[str, Any]) -> TrainConfig:
    """Defaults, then the preset named in `overrides`, then every non-None override; the
    model's fields go into `TrainConfig.model`."""
    values: dict[str, Any] = {}
    if overrides.get("preset"):
        values.update(load_preset(overrides["preset"]))
    values.update({k: v for k, v in overrides.items() if v is not None})
    model = {**DEFAULT_MODEL, **values.pop("model", {})}
    model.update({k: values.pop(k) for k in MODEL_FIELDS if k in values})
    try:
        return TrainConfig(model=_model_config(model), **values)
    except TypeError as e:
        raise UserError(str(e)) from None
