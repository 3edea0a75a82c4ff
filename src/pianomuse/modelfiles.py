"""A model's files, and the engine inference runs them on.

A model is its weights file (safetensors: the source of truth, what training writes and
evaluation reads) and, beside it, its ONNX export (`X.safetensors` -> the folder `X.onnx`,
written by `pianomuse export`). Where the export is there, generation runs it on ONNX Runtime
and never imports torch; where it is not, or where only PyTorch can do the job (a style, a
CUDA device named by number), the weights run on PyTorch.

The export records the sha256 of the file it was made from, so an export left behind by a
retrained model is not used for it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from pianomuse.errors import FieldError, UserError
from pianomuse.generate.engine import Engine

RUNTIMES = ("auto", "onnx", "torch")  # auto: ONNX Runtime where the export is there
EXPORT_SUFFIX = ".onnx"
TORCH_MISSING = (
    "this needs PyTorch, which the copilot alone does not install: "
    "`uv sync --extra train` (or `pip install 'pianomuse[train]'`)"
)


def file_sha(path: Path) -> str:
    """The first 16 hex digits of a file's sha256: how a sidecar, a style or an export names
    the model file it came from (read once per file version and process)."""
    st = Path(path).stat()
    return _sha(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _sha(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def export_folder(path: Path) -> Path:
    """Where the ONNX export of the weights file `path` lives."""
    return path.with_suffix(EXPORT_SUFFIX)


def export_matches(path: Path, precision: str, sha: str | None = None) -> bool:
    """Whether `path` has an export beside it, made from this very file, with the graphs of
    `precision`."""
    from pianomuse.runtime.onnx import META_FILE, graph_file

    folder = export_folder(path)
    try:
        info = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    graphs = (folder / graph_file(g, precision) for g in ("step", "prefill"))
    return info.get("source_sha256") == (sha or file_sha(path)) and all(g.is_file() for g in graphs)


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise FieldError("runtime", f"is one of {', '.join(RUNTIMES)}, not {runtime!r}")
    return runtime


def have_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def require_torch() -> None:
    """One line, not a traceback, where PyTorch is needed and not installed."""
    if not have_torch():
        raise UserError(TORCH_MISSING)


def open_onnx(path: Path, *, precision: str, threads: int, cuda: bool) -> Engine:
    """The ONNX engine of the export beside `path`."""
    from pianomuse.runtime.onnx import OnnxEngine, OnnxModel

    return OnnxEngine(OnnxModel(export_folder(path), precision, threads=threads, cuda=cuda))


def wants_onnx(
    path: Path, *, runtime: str, precision: str, device: str, sha: str, styled: bool
) -> bool:
    """Whether `path` runs on ONNX Runtime: `runtime` says so, or (auto) its export is there
    and nothing needs PyTorch (a style, a numbered CUDA device)."""
    check_runtime(runtime)
    has = export_matches(path, precision, sha)
    if runtime == "onnx":
        if not has:
            raise UserError(
                f"{path.name} has no ONNX export of {precision} weights beside it "
                f"(`pianomuse export --model {path.name} -o {export_folder(path).name}`)"
            )
        if styled:
            raise UserError("a style runs on PyTorch: --runtime torch or auto")
        return True
    return runtime == "auto" and has and not styled and device in ("cpu", "auto")


def torch_model(path: Path) -> Any:
    """The PyTorch model of `path` (on the CPU)."""
    require_torch()
    from pianomuse.model import load_model

    return load_model(path)
