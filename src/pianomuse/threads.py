"""How many CPU threads inference runs on.

A copilot runs beside other programs (a browser, a DAW, a training run). With another process
busy on one of two cores, PyTorch's default of one thread per core decoded 3-6x slower (once
10x) than one thread, because each operation waits for the thread that shares its core; on an
idle machine two threads were 15 % faster than one. So inference runs on as many threads as
the machine has idle cores when it starts (`idle_cores`: the idle time of each core this
process may use over 50 ms, from /proc/stat), at least one; elsewhere than Linux, on one.
`--threads` overrides it. Training keeps PyTorch's default: there the matrices are large and
the machine is the run's.

Chosen where a command or the server starts, never at import, and given to the engine
(ONNX Runtime's sessions, or PyTorch's thread count). On ONNX Runtime the copilot runs on one
thread unless told (`inference_threads`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pianomuse.errors import FieldError

SAMPLE_S = 0.05  # how long the cores' idle time is watched: 5 ticks of the kernel's clock


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


def cpu_times(stat: str) -> dict[int, tuple[int, int]]:
    """(idle, total) clock ticks of each core, from the text of /proc/stat."""
    out = {}
    for line in stat.splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            out[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return out


def idle_cores(window_s: float = SAMPLE_S) -> float | None:
    """How many of this process's cores were idle over the next `window_s` seconds (a core
    half busy counts half); None where /proc/stat does not tell."""
    stat = Path("/proc/stat")
    try:
        before = cpu_times(stat.read_text())
        time.sleep(window_s)
        after = cpu_times(stat.read_text())
        mine = os.sched_getaffinity(0)
    except (OSError, AttributeError, ValueError):
        return None
    idle = 0.0
    for cpu in mine & before.keys() & after.keys():
        d_idle, d_total = (a - b for a, b in zip(after[cpu], before[cpu], strict=True))
        idle += d_idle / d_total if d_total > 0 else 1.0  # no tick at all: nothing ran
    return idle


def default_threads() -> int:
    """The policy above: the idle cores, rounded, at least 1 (1 where that is unknown)."""
    idle = idle_cores()
    return 1 if idle is None else max(1, min(max_threads(), round(idle)))


def inference_threads(
    threads: int | None = None, *, onnx: bool = False, session: bool = False
) -> int:
    """`threads`, checked; else one on ONNX Runtime or for a session, else the policy above.

    ONNX Runtime's step gains nothing from a second thread even on a quiet machine, and its
    spinning workers burn the core: the README's first command took 2.48-2.68 s on one
    thread against 2.42-3.57 s on two, with twice the CPU time (six runs each)."""
    if threads is not None:
        return check_threads(threads)
    return 1 if onnx or session else check_threads(default_threads())
