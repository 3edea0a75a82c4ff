"""How many CPU threads inference runs on.

A copilot runs beside other programs (a browser, a DAW, a training run). With another process
busy on one of two cores, PyTorch's default of one thread per core decoded 3-4x slower (once
10x) than one thread, because each operation waits for the thread that shares its core; on an
idle machine one thread loses nothing at batch 1, where a step is a few small matrix-vector
products. So inference runs on one thread unless told otherwise (`--threads`). Training keeps
PyTorch's default: there the matrices are large and the machine is the run's.

Applied where a command or the server starts, never at import.
"""

from __future__ import annotations

import os

import torch

from pianomuse.errors import FieldError

DEFAULT_INFERENCE_THREADS = 1


def max_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def check_threads(threads: int) -> int:
    """`threads` if it is between 1 and the cores this process may use, else a one-line error."""
    if not 1 <= threads <= max_threads():
        raise FieldError("threads", f"must be between 1 and {max_threads()} (the cores here)")
    return threads


def use_inference_threads(threads: int | None = None) -> int:
    """Run PyTorch's operations on `threads` threads (None: the policy above); returns it."""
    n = check_threads(DEFAULT_INFERENCE_THREADS if threads is None else threads)
    torch.set_num_threads(n)
    return n
