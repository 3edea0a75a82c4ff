"""Throughput of `prepare` over a MIDI collection (e.g. the 800 POP909 songs).

    uv run python benchmarks/prepare_speed.py PATH/TO/pop909 [--workers 1 2]

Prints, for each worker count, files/s, tokens and tokens/s of a cold run into a fresh
folder, side by side with a cached re-run of the same folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pianomuse.data.prepare import prepare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    print(f"{'run':<18} {'files':>6} {'tokens':>9} {'seconds':>8} {'files/s':>8} {'tokens/s':>10}")
    for w in args.workers:
        with tempfile.TemporaryDirectory() as out:
            for label in (f"{w} worker(s)", f"{w} worker(s) again"):
                t0 = time.perf_counter()
                m = prepare(args.data, out, workers=w)
                dt = time.perf_counter() - t0
                n = len(m["files"]) + len(m["skipped"])
                tokens = sum(s["tokens"] for s in m["splits"].values())
                print(
                    f"{label:<18} {n:>6} {tokens:>9} {dt:>8.2f} {n / dt:>8.1f} {tokens / dt:>10.0f}"
                )


if __name__ == "__main__":
    main()
