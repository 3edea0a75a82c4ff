"""The web copilot under a burst of users, on loopback.

    uv run python benchmarks/serve_load.py [--model M] [--users 20] [--bars 2] [--candidates 2]

Starts the real server (uvicorn, one shared model, generation serialised behind a queue of
`--queue`) and measures, side by side: one request alone; a burst of `--users` requests at
once that take no for an answer (how many are served, how many get 503 + Retry-After); and the
same burst from clients that come back after Retry-After until served (latency percentiles,
and the slowest against one request alone).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvicorn

from pianomuse.bundled import default_model
from pianomuse.copilot import Copilot
from pianomuse.serve import ServeLimits, web_app

ROOT = Path(__file__).resolve().parent.parent


def post(url: str, body: bytes) -> tuple[int, int]:
    """(status, Retry-After or 0)."""
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            json.loads(r.read())
            return r.status, 0
    except urllib.error.HTTPError as e:
        json.loads(e.read())
        return e.code, int(e.headers.get("Retry-After", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--midi", type=Path, default=ROOT / "examples" / "pop909_099_opening.mid")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--bars", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--queue", type=int, default=4)
    args = ap.parse_args()

    copilot = Copilot(args.model or default_model())
    app = web_app(copilot, ServeLimits(queue=args.queue))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/complete"
    midi = base64.b64encode(args.midi.read_bytes()).decode()

    def body(seed: int) -> bytes:
        return json.dumps(
            {"midi": midi, "bars": args.bars, "candidates": args.candidates, "seed": seed}
        ).encode()

    post(url, body(0))  # warm-up
    t = time.perf_counter()
    assert post(url, body(1))[0] == 200
    alone = time.perf_counter() - t

    t = time.perf_counter()
    with ThreadPoolExecutor(args.users) as pool:
        burst = list(pool.map(lambda s: post(url, body(s))[0], range(args.users)))
    burst_s = time.perf_counter() - t

    def patient(seed: int) -> tuple[float, int]:
        t0, tries = time.perf_counter(), 0
        while True:
            tries += 1
            code, retry = post(url, body(seed))
            if code != 503:
                assert code == 200, code
                return time.perf_counter() - t0, tries
            time.sleep(retry)

    t = time.perf_counter()
    with ThreadPoolExecutor(args.users) as pool:
        waits = list(pool.map(patient, range(args.users)))
    patient_s = time.perf_counter() - t
    server.should_exit = True

    lat = sorted(w for w, _ in waits)
    p95 = lat[min(int(0.95 * len(lat)), len(lat) - 1)]
    rows = [
        ("one request alone", f"{alone:.2f} s", "1 served", "1.00"),
        (
            f"{args.users} at once, no retry",
            f"{burst_s:.2f} s for all answers",
            f"{burst.count(200)} served, {burst.count(503)} told 503, "
            f"{len(burst) - burst.count(200) - burst.count(503)} other",
            "",
        ),
        (
            f"{args.users} at once, retrying",
            f"p50 {statistics.median(lat):.2f} s, p95 {p95:.2f} s, max {lat[-1]:.2f} s",
            f"{len(lat)} served in {patient_s:.1f} s, {sum(n for _, n in waits)} tries",
            f"{lat[-1] / alone:.1f} (max / alone)",
        ),
    ]
    print(
        f"model {copilot.model_info.get('model')}, {args.bars} bars x {args.candidates} "
        f"candidates per request, queue {args.queue}"
    )
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("case", "time", "answers", "ratio")
    print("  ".join(h.ljust(w) for h, w in zip(head, width, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)))


if __name__ == "__main__":
    main()
