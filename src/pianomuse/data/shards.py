"""Reading prepared token shards: songs as memory-mapped arrays of token ids."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pianomuse.data.prepare import read_manifest
from pianomuse.tokenizer import Tokenizer


class TokenShards:
    """The songs of one split of a prepared folder, without loading them into memory."""

    def __init__(self, folder: str | os.PathLike, split: str = "train"):
        self.folder = Path(folder)
        manifest = read_manifest(self.folder)
        if manifest is None:
            raise FileNotFoundError(f"{self.folder}: not a prepared folder (no manifest.json)")
        self.manifest = manifest
        self.tokenizer = Tokenizer.load(self.folder)
        self.tokenizer.check_hash(manifest["tokenizer_hash"], what="this prepared data")
        self.offsets = np.fromfile(self.folder / f"{split}.idx", dtype=np.int64)
        n = int(self.offsets[-1]) if len(self.offsets) else 0
        self.tokens = (
            np.memmap(self.folder / f"{split}.bin", dtype=np.uint16, mode="r", shape=(n,))
            if n
            else np.zeros(0, dtype=np.uint16)
        )

    def __len__(self) -> int:
        return max(len(self.offsets) - 1, 0)

    def song(self, i: int) -> np.ndarray:
        """Token ids (T,) int64 of song i."""
        return np.asarray(self.tokens[self.offsets[i] : self.offsets[i + 1]], dtype=np.int64)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1]) if len(self.offsets) else 0
