"""The C allocator's policy for large blocks, set by a training run on the CPU.

glibc hands a freed block above its thresholds back to the kernel (`munmap`, or by trimming
the top of the heap), so every training step would get its activations as fresh pages, each
zeroed and faulted in again. Keeping freed memory in the process avoids that, as PyTorch's
caching allocator does on a GPU (and jemalloc or tcmalloc do on a CPU).

The order matters: setting glibc's trim threshold alone turns its adaptive mmap threshold
off and leaves it at 128 KiB, which faults far more. So the trim threshold and top pad are
only set once the mmap threshold is taken.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, never a fresh mapping
_TRIM_THRESHOLD = 2**31 - 1  # the heap's free top goes back only above 2 GiB (mallopt's max)
_TOP_PAD = 1 << 26  # the heap grows 64 MiB at a time


def keep_freed_memory() -> bool:
    """Keep memory freed by large tensors in the process for the next ones (glibc on Linux;
    elsewhere nothing changes). Process-wide, so called where a run starts, never at import.
    Returns whether the policy was set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) != 1:
        return False  # refused (musl's mallopt does nothing): leave the others alone
    return mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and mallopt(_M_TOP_PAD, _TOP_PAD) == 1
