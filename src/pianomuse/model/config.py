"""Configuration of an RWKV-7 ("x070") model.

The config travels inside every checkpoint this project writes (as JSON in the safetensors
metadata), so it holds every size needed to rebuild the module without guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

WKV_BACKENDS = ("auto", "chunked", "reference", "fla")


def _official_lora_rank(n_embd: int, factor: float, exponent: float) -> int:
    """LoRA width suggested by RWKV-LM v7 (`RWKV-v7/train_temp/src/model.py`, 2025 revision):
    ``max(32, int(round(factor * C**exponent / 32) * 32))``, i.e. a multiple of 32, at least 32."""
    return max(32, int(round(factor * n_embd**exponent / 32) * 32))


@dataclass
class RWKV7Config:
    """Sizes and switches of an RWKV-7 model; LoRA ranks left as None get the official formula."""

    vocab_size: int | None  # token ids (rows of emb.weight); None until a tokenizer sets it
    n_layer: int  # number of blocks
    n_embd: int  # model width C
    head_size: int = 64  # N, channels per head; H = n_embd // head_size
    decay_lora: int | None = None  # rank of the decay LoRA w1/w2 (None: ~1.8*sqrt(C), >= 32)
    aaa_lora: int | None = None  # rank of the in-context learning-rate LoRA a1/a2 (same formula)
    mv_lora: int | None = None  # rank of the value-residual LoRA v1/v2 (None: ~1.3*sqrt(C))
    gate_lora: int | None = None  # rank of the output-gate LoRA g1/g2 (None: ~0.6*C**0.8)
    ffn_mult: float = 4.0  # channel-mix hidden width = round(ffn_mult * n_embd); official is 4
    deep_embed: bool = False  # per-token DeepEmbed table ffn.enn scaling the channel-mix output
    chunk_len: int = 32  # L, tokens per WKV chunk (1..64); 32 is the fastest on a CPU
    wkv_backend: str = "auto"  # "auto" | "chunked" | "reference" | "fla" (fla needs CUDA + package)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_embd", "head_size", "chunk_len"):
            value = getattr(self, name)
            if name == "vocab_size" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RWKV7Config.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.head_size != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by head_size ({self.head_size})"
            )
        if not 1 <= self.chunk_len <= 64:
            # Beyond 64 the in-chunk cumulative log-decay can reach ~-39 per side and the
            # factored exponentials of the chunked WKV leave the comfortable fp32 range.
            raise ValueError(f"chunk_len must be in 1..64, got {self.chunk_len}")
        if self.wkv_backend not in WKV_BACKENDS:
            choices = ", ".join(WKV_BACKENDS)
            raise ValueError(f"wkv_backend must be one of {choices}, not {self.wkv_backend!r}")
        if not (isinstance(self.ffn_mult, (int, float)) and self.ffn_mult > 0):
            raise ValueError(f"ffn_mult must be positive, got {self.ffn_mult!r}")
        self.ffn_mult = float(self.ffn_mult)
        if self.dim_ffn <= 0:
            raise ValueError(f"ffn_mult * n_embd must round to at least 1, got {self.dim_ffn}")
        self.deep_embed = bool(self.deep_embed)
        defaults = {
            "decay_lora": _official_lora_rank(self.n_embd, 1.8, 0.5),
            "aaa_lora": _official_lora_rank(self.n_embd, 1.8, 0.5),
            "mv_lora": _official_lora_rank(self.n_embd, 1.3, 0.5),
            "gate_lora": _official_lora_rank(self.n_embd, 0.6, 0.8),
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            if value is None:
                setattr(self, name, default)
            elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RWKV7Config.{name} must be a positive integer, got {value!r}")

    @property
    def n_head(self) -> int:
        """H, the number of heads."""
        return self.n_embd // self.head_size

    @property
    def dim_ffn(self) -> int:
        """Hidden width of the channel mix."""
        return int(round(self.ffn_mult * self.n_embd))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (LoRA ranks resolved to integers)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RWKV7Config:
        """Inverse of `to_dict`; unknown keys are an error so a typo cannot pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RWKV7Config keys: {sorted(unknown)}")
        return cls(**data)

    def with_vocab(self, vocab_size: int) -> RWKV7Config:
        """The same model for a vocabulary of `vocab_size` tokens."""
        return replace(self, vocab_size=vocab_size)

    def n_params(self) -> int:
        """Number of parameters of the model this config describes."""
        if self.vocab_size is None:
            raise ValueError("n_params needs the vocabulary size")
        c, v, h, n = self.n_embd, self.vocab_size, self.n_head, self.head_size
        lora = (self.decay_lora + self.aaa_lora + self.gate_lora) * 2 * c
        value_residual = c + self.mv_lora * 2 * c  # v0, v1, v2: every layer but the first
        att = 6 * c + 4 * c + lora + h * n + 4 * c * c + 2 * c  # mixes, w0 a0 k_k k_a, ln_x
        ffn = c + 2 * c * self.dim_ffn + (v * c if self.deep_embed else 0)
        block = att + ffn + 4 * c  # ln1, ln2
        layers = self.n_layer * block + (self.n_layer - 1) * value_residual
        return 2 * v * c + layers + 2 * c + 2 * c  # emb, head, ln0, ln_out


@dataclass(frozen=True)
class TrainingSummary:
    """How a model was trained, stored in its file: the copilot reads its context length here."""

    max_seq_len: int  # training window in tokens: the context the model knows how to use
    steps: int  # optimizer steps taken
    tokens_seen: float  # loss-carrying tokens consumed
    data_fingerprint: str  # hash of the prepared data's inputs (manifest `inputs_fingerprint`)
    tokenizer_hash: str  # the tokenizer the data was made with
    objective: str = "lm"  # lm or completion
    fim_rate: float = 0.0  # share of fill-in-the-middle windows

    def __post_init__(self) -> None:
        if self.max_seq_len < 1 or self.steps < 0 or self.tokens_seen < 0:
            raise ValueError("TrainingSummary: max_seq_len >= 1, steps and tokens_seen >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSummary:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ModelMeta:
    """What a model file says besides its weights; a loaded model carries it as `model.meta`,
    so a model object alone is enough to rebuild its tokenizer."""

    tokenizer_config: dict[str, Any] | None = None  # the tokenizer's full configuration
    tokenizer_hash: str | None = None  # its hash
    training: TrainingSummary | None = None  # None for official checkpoints
