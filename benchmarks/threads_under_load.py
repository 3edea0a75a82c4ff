"""Decoding with one or two threads, on an idle machine and beside a busy core.

    uv run python benchmarks/threads_under_load.py [--repeats 3] [--bars 4]

A copilot runs beside other programs. This writes `--bars` bars after song 001's opening
(the bundled model, 1 candidate, the default int8 weights) with PyTorch on 1 thread, on
every core, and on what the default policy (`pianomuse.threads`: the idle cores) picks
there and then, first with the machine as it is, then with a process spinning on core 0 (a
stand-in for a browser or a DAW). Prints the best wall time of each, and the policy's time
over the better of the other two: it must not be above 1 (beyond the noise of the machine).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from pianomuse.bundled import default_model
from pianomuse.copilot import Copilot, Sampling
from pianomuse.threads import default_threads, max_threads

SONG = Path(__file__).resolve().parent.parent / "tests" / "data" / "pop909" / "001" / "001.mid"
HOG = "import os; os.sched_setaffinity(0, {0})\nwhile True: pass"


def best_wall(cps: dict[int, Copilot], threads: int, bars: int, repeats: int) -> float:
    """The best wall time of the copilot on `threads` threads (ONNX Runtime's are its
    sessions'; PyTorch's are one global setting)."""
    cp = cps[threads]
    torch.set_num_threads(threads)
    best = float("inf")
    for r in range(repeats):
        cp.engine.kept().clear()  # a first ask each time: prefill too
        t0 = time.perf_counter()
        cp.complete(SONG, bars=bars, candidates=1, sampling=Sampling(seed=r))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument("--runtime", default="auto", help="auto, onnx or torch")
    args = ap.parse_args()
    cores = max_threads()
    cps = {
        n: Copilot(default_model(), max_context_tokens=1024, threads=n, runtime=args.runtime)
        for n in range(1, cores + 1)
    }
    for n, cp in cps.items():
        cp.warm_up()
        best_wall(cps, n, 1, 1)  # first-call costs out of the way
    runtime = cps[1].engine.runtime
    print(f"{cores} cores, {runtime}; {args.bars} bars after song 001, 1 candidate, "
          f"best of {args.repeats}")  # fmt: skip
    print(f"{'machine':<14} {'1 thread s':>11} {f'{cores} threads s':>12} {'policy s':>9} "
          f"{'picks':>6} {'policy/best':>12}")  # fmt: skip
    for label in ("as it is", "core 0 busy"):
        hog = None
        if label == "core 0 busy":
            hog = subprocess.Popen([sys.executable, "-c", HOG])
            time.sleep(0.5)
        try:
            one = best_wall(cps, 1, args.bars, args.repeats)
            many = best_wall(cps, cores, args.bars, args.repeats)
            picks = default_threads()
            policy = best_wall(cps, picks, args.bars, args.repeats)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        ratio = policy / min(one, many)
        print(f"{label:<14} {one:>11.2f} {many:>12.2f} {policy:>9.2f} {picks:>6} {ratio:>12.2f}")
    print(f"os.cpu_count() {os.cpu_count()}")


if __name__ == "__main__":
    main()
