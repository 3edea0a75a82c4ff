"""`pianomuse eval`: scoring any model on any data with the tokenizer it was trained with."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from pianomuse.data.prepare import prepare, read_manifest
from pianomuse.data.samples import SampleStream
from pianomuse.data.shards import TokenShards
from pianomuse.errors import UserError
from pianomuse.model.checkpoint import load_checkpoint
from pianomuse.train.evaluate import evaluate


def evaluate_model(
    model_path: Path,
    data_path: Path,
    split: str = "val",
    max_seq_len: int = 1024,
    batch_size: int = 8,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Loss (nats), perplexity and bits per token; a MIDI folder is tokenized whole."""
    ckpt = load_checkpoint(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        if read_manifest(data_path) is None:
            prepare(data_path, tmp, val_fraction=0.0)
            data_path, split = Path(tmp), "train"
        shards = TokenShards(data_path, split)
        if ckpt.tokenizer_hash is not None:
            shards.tokenizer.check_hash(ckpt.tokenizer_hash, what=f"the model {model_path}")
        if len(shards) == 0:
            raise UserError(f"{data_path}: the {split} split has no songs")
        stream = SampleStream(shards, max_seq_len)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        r = evaluate(ckpt.model.to(device), stream, batch_size, max_batches, device)
    return {
        "songs": len(shards),
        "tokens": int(r["tokens"]),
        "loss": r["loss"],
        "ppl": r["ppl"],
        "bits_per_token": r["bpt"],
    }
