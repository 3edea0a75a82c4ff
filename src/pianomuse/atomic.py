"""Writing files so that a reader never sees half of one: the project's one atomic-write helper.

A file is written to a temporary name in its own folder, then renamed over the target
(`os.replace` is atomic on POSIX and Windows). A set of files is written all or nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from pianomuse.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it over `path`.
    On any failure the temporary file is removed and `path` is left as it was."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp's 0600 would hide outputs and shared models from other users.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_files_atomic(out_dir: str | os.PathLike, files: Mapping[str, bytes]) -> list[Path]:
    """Write every (name, bytes) of `files` into `out_dir`, all or nothing: on failure no new
    file is left behind, and a folder this call created is removed again. Returns the paths
    in the order given. Errors are one line (`UserError`)."""
    out = Path(out_dir)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".pianomuse-", dir=out))
    except OSError as e:
        raise UserError(f"{out}: cannot write there ({e.strerror})") from None
    moved: list[Path] = []
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        for name in files:
            os.replace(tmp / name, out / name)
            moved.append(out / name)
    except OSError as e:
        for p in moved:
            p.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise UserError(f"{out}: cannot write there ({e.strerror})") from None
    shutil.rmtree(tmp, ignore_errors=True)
    return moved
