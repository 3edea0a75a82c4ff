"""(context, completion) pairs cut at a bar, as JSONL or a Hugging Face datasets folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pianomuse.atomic import write_bytes_atomic
from pianomuse.data.samples import SampleStream
from pianomuse.data.shards import TokenShards
from pianomuse.errors import UserError
from pianomuse.tokenizer import Tokenizer

Pair = tuple[np.ndarray, np.ndarray]


def make_pairs(shards: TokenShards, max_seq_len: int, seed: int = 0) -> list[Pair]:
    """(context, completion) pairs tiling every song, split at a random bar, in song order."""
    stream = SampleStream(shards, max_seq_len, objective="completion", seed=seed)
    items = stream.items(0)
    order = np.lexsort((items[:, 1], items[:, 0]))  # by song, then start
    pairs = []
    for i in order:
        s = stream.sample(0, int(i))
        split = int(np.argmax(s.loss_mask))
        pairs.append((s.ids[:split], s.ids[split:]))
    return pairs


def export_jsonl(pairs: list[Pair], tok: Tokenizer, path: str | os.PathLike) -> int:
    """One JSON object a line: context and completion token ids and the tokenizer hash."""
    lines = [
        json.dumps({"context": c.tolist(), "completion": d.tolist(), "tokenizer_hash": tok.hash})
        for c, d in pairs
    ]
    write_bytes_atomic(("\n".join(lines) + "\n").encode(), path)
    return len(lines)


def import_jsonl(path: str | os.PathLike, tok: Tokenizer) -> list[Pair]:
    """Read pairs written by `export_jsonl`, refusing those of another tokenizer."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ctx, comp = row["context"], row["completion"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path}:{n}: not a context/completion pair") from None
            tok.check_hash(row.get("tokenizer_hash", ""), what=f"{path}:{n}")
            pairs.append((np.asarray(ctx, dtype=np.int64), np.asarray(comp, dtype=np.int64)))
    return pairs


def export_hf(pairs: list[Pair], tok: Tokenizer, folder: str | os.PathLike) -> int:
    """Save the pairs as a Hugging Face `datasets` folder (load with `load_from_disk`)."""
    try:
        import datasets
    except ImportError:
        raise UserError("Hugging Face export needs the extra: uv sync --extra hf") from None
    ds = datasets.Dataset.from_dict(
        {
            "context": [c.tolist() for c, _ in pairs],
            "completion": [d.tolist() for _, d in pairs],
        }
    )
    ds.save_to_disk(str(folder))
    tok.save(Path(folder))
    return len(pairs)
