"""The copilot on ONNX Runtime (the default where a model has its export) beside the same
jobs on PyTorch (`--runtime torch`), in one run:

1. the README's first command (`pianomuse complete examples/pop909_099_opening.mid`), wall
   seconds of a fresh process, median of `--repeats`; then with a CPU hog on core 0;
2. the web server: seconds from starting `pianomuse serve` to its first answer (the page),
   and to its first continuation (`POST /api/complete`, 4 bars, 2 candidates);
3. live play: the first note of an answer ready after the trigger, and a bar absorbed
   (median), in a session fed song 002's opening (`benchmarks/live_latency.py`'s driver).

    uv run python benchmarks/runtime_targets.py [--repeats 3]

Each process runs as on a user's machine: Python writes its bytecode caches (a first,
untimed run of each command writes them), whatever PYTHONDONTWRITEBYTECODE says here. The
installed size of each stack is measured apart (the README gives it): it needs a fresh
environment.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pop909_099_opening.mid"
HOG = "import os; os.sched_setaffinity(0, {0})\nwhile True: pass"
RUNTIMES = ("auto", "torch")
TARGETS = {"first command s": 3.0, "... core 0 busy s": 6.0, "server page s": 1.0,
           "live first note ms": 30.0, "live bar absorbed ms": 10.0}  # fmt: skip


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pianomuse", *args]


def first_command(runtime: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            subprocess.run(cli("complete", str(EXAMPLE), "-o", out, "--runtime", runtime),
                           check=True, capture_output=True, env=ENV)  # fmt: skip
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server(runtime: str) -> tuple[float, float]:
    """Seconds from start to the page's answer, and to the first continuation's."""
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cli("serve", "--port", str(port), "--runtime", runtime), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the server stopped") from None
                time.sleep(0.01)
        page = time.perf_counter() - t0
        body = {"midi": base64.b64encode(EXAMPLE.read_bytes()).decode(), "bars": 4,
                "candidates": 2}  # fmt: skip
        req = urllib.request.Request(base + "/api/complete", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
        urllib.request.urlopen(req, timeout=120).read()
        return page, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()


def live(runtime: str) -> tuple[float, float]:
    """Median ms of an answer's first note ready after the trigger (1, 2 and 4 bars) and
    of a bar absorbed."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from live_latency import answer_in_real_time, phrase_events, play_phrase
    from pianomuse.bundled import default_model
    from pianomuse.copilot import Copilot, Sampling
    from pianomuse.live import LiveSession, LiveSettings

    cp = Copilot(default_model(), runtime=runtime, threads=1)
    bpm, bars = 96.0, 8
    bar_s = 4 * 60 / bpm
    events = phrase_events(bars, bpm)
    firsts, absorb = [], []
    for answer in (1, 2, 4):
        s = LiveSession(cp, LiveSettings(bpm=bpm, bars=answer, silence_bars=8),
                        sampling=Sampling(seed=answer))  # fmt: skip
        play_phrase(s, events, until=bars * bar_s + 0.3)
        absorb += s.status["absorb_ms"]
        firsts.append(answer_in_real_time(s, bars * bar_s + 0.3)["first_ms"])
    return float(np.median(firsts)), float(np.median(absorb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows: dict[str, dict[str, float]] = {k: {} for k in TARGETS}
    for rt in RUNTIMES:  # bytecode caches written, files in the page cache
        first_command(rt, 1)
        server(rt)
    for rt in RUNTIMES:
        rows["first command s"][rt] = first_command(rt, args.repeats)
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        time.sleep(0.5)
        for rt in RUNTIMES:
            rows["... core 0 busy s"][rt] = first_command(rt, 1)
    finally:
        hog.kill()
        hog.wait()
    for rt in RUNTIMES:
        page, first = zip(*(server(rt) for _ in range(args.repeats)), strict=True)
        rows["server page s"][rt] = statistics.median(page)
        rows.setdefault("server first continuation s", {})[rt] = statistics.median(first)
        rows["live first note ms"][rt], rows["live bar absorbed ms"][rt] = live(rt)
    print(f"{os.cpu_count()} cores; ONNX Runtime (auto) beside PyTorch (torch)")
    print(f"{'':<30}{'onnx':>10}{'torch':>10}{'ratio':>8}{'target':>9}  met")
    for name, row in rows.items():
        target = TARGETS.get(name)
        ratio = row["torch"] / row["auto"]
        met = "" if target is None else ("yes" if row["auto"] <= target else "NO")
        tgt = "" if target is None else f"{target:g}"
        print(f"{name:<30}{row['auto']:>10.2f}{row['torch']:>10.2f}{ratio:>7.1f}x{tgt:>9}  {met}")


if __name__ == "__main__":
    main()
