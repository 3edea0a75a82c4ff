"""How much memory a model needs, from its config alone: pick batch and length before renting
a GPU, and refuse a model that cannot fit before allocating it.

Training keeps the weights, their gradients, AdamW's two moments and the activations the
backward pass needs; inference keeps the weights, the recurrent state and one layer's working
tensors. The activation figures are this implementation's, fitted to counts taken with
saved-tensor hooks: per token and layer the backward pass keeps

    52.3 C + 121 + 4 H L + 2 C N / L  floats

(the projections, mixes and LoRAs of a block ~ 52 C; the four L x L chunk matrices per head,
4 H L; the two N x N chunk matrices per head, spread over the L tokens of a chunk), plus
2 C + V per token for the embedding and the head; a prefill holds most of one layer's share
at a time. Under bf16 autocast less is kept, but autocast holds bf16 copies of the weights.
On the CPU, the process's resident memory can exceed this tensor peak: freed blocks stay in
the allocator.

Letters: B batch, T sequence length, C width, F channel-mix width, H heads, N head size,
L chunk length, V vocabulary, P parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import RWKV7Config

FLOAT = 4  # bytes of an fp32 number
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes, by what holds them."""

    params: int  # the weights (fp32)
    grads: int  # their gradients (training)
    optimizer: int  # AdamW's two moments (training)
    activations: int  # kept for the backward pass (training) or one layer's work (inference)
    state: int  # the recurrent state of the batch (shifts and WKV), fp32

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.state

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def layer_floats_per_token(config: RWKV7Config) -> float:
    """Floats one layer keeps per token for the backward pass (see the module docstring)."""
    c, h, n, chunk = config.n_embd, config.n_head, config.head_size, config.chunk_len
    return 52.3 * c + 121 + 4 * h * chunk + 2 * c * n / chunk


def estimate_memory(
    config: RWKV7Config,
    batch: int,
    seq_len: int,
    *,
    training: bool = True,
    precision: str = "fp32",
) -> MemoryEstimate:
    """Peak tensor memory of one training step (forward, backward, AdamW) or of an inference
    prefill of `batch` x `seq_len` tokens (decoding one token needs less)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    if batch < 1 or seq_len < 1:
        raise ValueError("batch and seq_len must be at least 1")
    p = config.n_params()
    tokens = batch * seq_len
    c, v, layers = config.n_embd, config.vocab_size, config.n_layer
    state = batch * layers * (2 * c + config.n_head * config.head_size**2) * FLOAT
    outer = tokens * (2 * c + v) * FLOAT  # embedding, final norm, logits
    if training:
        kept = tokens * layers * layer_floats_per_token(config) * FLOAT
        if precision == "bf16":
            kept = 0.9 * kept + 2 * p  # fewer activations kept, plus bf16 copies of the weights
        return MemoryEstimate(p * FLOAT, p * FLOAT, 2 * p * FLOAT, int(kept + outer), state)
    # Inference: no graph, so only one layer's tensors are alive at a time, and the logits.
    work = 0.85 * tokens * layer_floats_per_token(config) * FLOAT + outer
    return MemoryEstimate(p * FLOAT, 0, 0, int(work), state)


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux: MemAvailable; elsewhere: physical
    memory), or None when it cannot tell."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
