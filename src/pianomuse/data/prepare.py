"""`pianomuse prepare`: a folder of MIDI files -> token shards, an index and a manifest.

Layout of a prepared folder:
    tokenizer.json       the tokenizer's configuration and hash
    manifest.json        files used (with content hash, split, token count), files skipped
                         with the reason, totals per split
    train.bin, val.bin   all songs' token ids back to back, uint16 (read with np.memmap)
    train.idx, val.idx   int64 offsets of each song in the .bin (n_songs + 1 values)

Deterministic: the same input gives byte-identical output (no timestamps, sorted files, a
train/validation split decided by each file's content hash, so renaming or adding files
never moves a song to the other split).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pianomuse.atomic import write_bytes_atomic
from pianomuse.data.files import beat_file_for, chord_file_for, find_midi_files
from pianomuse.errors import UserError
from pianomuse.harmony import read_chord_file
from pianomuse.tokenizer import (
    MidiInputError,
    Tokenizer,
    align_to_beats,
    load_score,
    read_beats,
)

MANIFEST = "manifest.json"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class FileResult:
    """What tokenizing one file gave: ids, or the reason it was skipped."""

    path: str  # relative to the data root, '/'-separated
    sha256: str
    ids: np.ndarray | None
    reason: str | None
    aligned: bool


def split_of(sha256: str, val_fraction: float) -> str:
    """'val' for a stable `val_fraction` share of files, chosen by content hash."""
    return "val" if int(sha256[:8], 16) / 2**32 < val_fraction else "train"


def read_song(path: Path, data: bytes | None = None) -> Any:
    """A MIDI file as a (symusic) Score, re-timed onto its beats and carrying its annotated chords
    when those annotations lie beside it (`data`: its bytes, if already read)."""
    score = load_score(data if data is not None else path)
    beats, chords = beat_file_for(path), chord_file_for(path)
    if beats is not None:
        annotated = read_chord_file(chords) if chords is not None else None
        score = align_to_beats(score, read_beats(beats), chords=annotated)
    return score


def songs_in_split(root: str | os.PathLike, split: str, val_fraction: float = 0.1) -> list[Path]:
    """The MIDI files under `root` that `prepare` (at `val_fraction`) puts in `split`: the
    split is decided by each file's content hash, so the same songs on any machine."""
    files = find_midi_files(root)
    return [
        f
        for f in files
        if split_of(hashlib.sha256(f.read_bytes()).hexdigest(), val_fraction) == split
    ]


def tokenize_file(tok: Tokenizer, path: Path, root: Path) -> FileResult:
    """Tokenize one MIDI file, aligned to its beat file when one lies beside it."""
    rel = path.relative_to(root).as_posix() if path != root else path.name
    try:
        data = path.read_bytes()
    except OSError as e:
        return FileResult(rel, "", None, f"cannot read ({e.strerror})", False)
    sha = hashlib.sha256(data).hexdigest()
    beats = beat_file_for(path)
    try:
        ids = tok.encode(read_song(path, data))
    except MidiInputError as e:
        # The parser's messages start with the source name; the manifest has the path.
        return FileResult(rel, sha, None, str(e).removeprefix("input: "), beats is not None)
    except Exception as e:  # one odd file must not stop a whole collection
        why = f"could not be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        return FileResult(rel, sha, None, why, beats is not None)
    if ids.max() >= 2**16:
        raise ValueError("vocabulary larger than uint16 shards can hold")
    return FileResult(rel, sha, ids, None, beats is not None)


_worker_tok: Tokenizer | None = None


def _init_worker(cfg: dict) -> None:
    global _worker_tok
    _worker_tok = Tokenizer.from_config(cfg)


def _work(args: tuple[Path, Path]) -> FileResult:
    assert _worker_tok is not None
    return tokenize_file(_worker_tok, *args)


def _inputs_fingerprint(files: list[Path], root: Path) -> str:
    """Hash of every input's relative path and content (and of its beat file): the same
    inputs give the same fingerprint on any machine, so a cached preparation is reused."""
    h = hashlib.sha256()
    for f in files:
        rel = f.relative_to(root).as_posix() if f != root else f.name
        h.update(f"{rel}|{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
        for kind, a in (("beats", beat_file_for(f)), ("chords", chord_file_for(f))):
            if a is not None:
                h.update(f"{kind}|{hashlib.sha256(a.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def prepare(
    data_path: str | os.PathLike,
    out: str | os.PathLike,
    val_fraction: float = 0.1,
    workers: int = 1,
    tokenizer: Tokenizer | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Tokenize every MIDI file under `data_path` into shards in `out`; returns the manifest.

    When `out` already holds a preparation of the same inputs with the same tokenizer and
    split, nothing is redone (this is the cache used by `pianomuse train`).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError("--val-fraction must be in [0, 1)")
    root = Path(data_path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    tok = tokenizer or Tokenizer.latest()
    files = find_midi_files(root)
    if not files:
        raise UserError(f"{root}: no .mid or .midi files found")
    base = root if root.is_dir() else root.parent
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = _inputs_fingerprint(files, base)
    old = read_manifest(out)
    if (
        old is not None
        and old.get("inputs_fingerprint") == fingerprint
        and old.get("tokenizer_hash") == tok.hash
        and old.get("val_fraction") == val_fraction
        and all((out / f"{s}.bin").exists() for s in SPLITS)
    ):
        return old

    results = _tokenize_all(tok, [(f, base) for f in files], workers, progress)
    manifest = {
        "format": "pianomuse-shards",
        "version": 1,
        "tokenizer_hash": tok.hash,
        "val_fraction": val_fraction,
        "inputs_fingerprint": fingerprint,
        "files": [],
        "skipped": [],
        "splits": {},
    }
    chunks: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    used = []
    for r in results:
        if r.ids is None:
            manifest["skipped"].append({"path": r.path, "reason": r.reason})
        elif r.sha256 in seen:  # the same song twice would leak between epochs and splits
            manifest["skipped"].append({"path": r.path, "reason": "duplicate of another file"})
        else:
            seen.add(r.sha256)
            used.append(r)
    splits = [split_of(r.sha256, val_fraction) for r in used]
    if val_fraction > 0 and len(used) >= 2 and "val" not in splits:
        # A small collection may draw no validation song: hold out the lowest hash.
        splits[min(range(len(used)), key=lambda i: used[i].sha256)] = "val"
    for r, split in zip(used, splits, strict=True):
        chunks[split].append(r.ids.astype(np.uint16))
        manifest["files"].append(
            {
                "path": r.path,
                "sha256": r.sha256,
                "split": split,
                "tokens": len(r.ids),
                "aligned": r.aligned,
            }
        )
    for split in SPLITS:
        manifest["splits"][split] = _write_split(chunks[split], out, split)
    tok.save(out)
    write_bytes_atomic(json.dumps(manifest, indent=1).encode(), out / MANIFEST)
    return manifest


def _tokenize_all(
    tok: Tokenizer,
    jobs: list[tuple[Path, Path]],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[FileResult]:
    """Every (file, base) job tokenized, in the input order, in `workers` processes."""
    results: list[FileResult] = []
    if workers > 1:
        ctx = mp.get_context("spawn")  # no fork of a process that may hold torch threads
        with ctx.Pool(workers, initializer=_init_worker, initargs=(tok.config(),)) as pool:
            for r in pool.imap(_work, jobs, chunksize=4):  # imap keeps the input order
                results.append(r)
                if progress:
                    progress(len(results), len(jobs))
    else:
        for f, b in jobs:
            results.append(tokenize_file(tok, f, b))
            if progress:
                progress(len(results), len(jobs))
    return results


def _write_split(arrs: list[np.ndarray], out: Path, split: str) -> dict[str, int]:
    """A split's songs back to back (`.bin`) and their offsets (`.idx`)."""
    offsets = np.zeros(len(arrs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrs])
    data = np.concatenate(arrs) if arrs else np.zeros(0, dtype=np.uint16)
    write_bytes_atomic(data.tobytes(), out / f"{split}.bin")
    write_bytes_atomic(offsets.tobytes(), out / f"{split}.idx")
    return {"songs": len(arrs), "tokens": int(offsets[-1])}


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of a prepared folder, or None when there is none."""
    p = Path(folder) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def resolve_data(
    data_path: str | os.PathLike,
    cache: Path,
    *,
    val_fraction: float = 0.1,
    build: bool = True,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """The one way to read "a prepared folder or a MIDI folder": a prepared folder is used as
    it is; a MIDI folder (or file) is prepared into `cache` (once: a second call over the same
    inputs does no work), by `tokenizer` (default: the latest version). With `build=False`
    the path of the cache is returned without preparing (other processes of a distributed
    run, once the main one has prepared it)."""
    p = Path(data_path)
    if read_manifest(p) is not None:
        return p
    if not p.exists():
        raise UserError(f"{p}: no such file or folder")
    if build:
        prepare(p, cache, val_fraction=val_fraction, tokenizer=tokenizer)
    return cache
