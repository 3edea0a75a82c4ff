"""Live copilot latency on this machine: from the trigger to the first answer note ready to
play, the worst lag of any answer note behind its scheduled time (answers played in real
time), and the cost of absorbing one bar of the player's notes into the state; beside the
baseline that reads the whole history again at the trigger.

    uv run python benchmarks/live_latency.py [--model M] [--threads 2] [--bpm 96]

The player's phrase: the opening of examples/pop909_099_opening.mid, played at --bpm.
Targets (issue: live copilot): first note <= 100 ms, no note late, a bar absorbed <= 20 ms.
Last, a long jam (--jam-bars, 400 by default) shows whether absorbing a bar grows with the
history.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pianomuse.bundled import default_model
from pianomuse.copilot import Copilot, Sampling
from pianomuse.live import LiveSession, LiveSettings
from pianomuse.model.quant import inference_model
from pianomuse.model.traced import fast_prefill
from pianomuse.tokenizer import load_score, notes_in_beats

ROOT = Path(__file__).resolve().parent.parent
PHRASE = ROOT / "examples" / "pop909_099_opening.mid"


def phrase_events(bars: int, bpm: float) -> list[tuple[float, str, int, int]]:
    n = notes_in_beats(load_score(PHRASE))
    keep = n["onset"] < 4 * bars
    out = []
    for o, d, p, v in zip(
        *(n[k][keep] for k in ("onset", "duration", "pitch", "velocity")), strict=True
    ):
        on = float(o) * 60 / bpm
        out.append((on, "on", int(p), int(v)))
        out.append((on + max(float(d), 0.05) * 60 / bpm, "off", int(p), 0))
    return sorted(out, key=lambda e: (e[0], e[1] == "on"))


def play_phrase(session: LiveSession, events, until: float, step: float = 0.05) -> None:
    """The phrase into the session, faster than real time."""
    i, t = 0, 0.0
    while t <= until:
        while i < len(events) and events[i][0] <= t:
            at, kind, pitch, vel = events[i]
            if kind == "on":
                session.note_on(at, pitch, vel)
            else:
                session.note_off(at, pitch)
            i += 1
        session.poll(t)
        t += step


def answer_in_real_time(session: LiveSession, t_trigger: float) -> dict:
    """Trigger at `t_trigger` and play the answer against the wall clock."""
    session.trigger(t_trigger)
    w0 = time.perf_counter()
    first = session.poll(t_trigger, budget_s=0.0)  # returns at its first note
    first_ms = 1000 * (time.perf_counter() - w0)
    notes = [(o, t_trigger + first_ms / 1000) for o in first if o.kind == "note"]
    end = None
    while True:
        now = t_trigger + (time.perf_counter() - w0)
        outs = session.poll(now)
        notes += [(o, now) for o in outs if o.kind == "note"]
        if session.answer is not None and session.answer.done and end is None:
            end = now
        if session.answer is None or (end is not None and now > end + 0.05):
            break
        time.sleep(0.002)
    lags = [ready - o.time for o, ready in notes]  # > 0: ready after its time (late)
    return {
        "first_ms": first_ms,
        "notes": len(notes),
        "late": sum(lag > 0 for lag in lags),
        "worst_lag_ms": 1000 * max(lags) if lags else float("nan"),
    }


def twin_rows(cp: Copilot, ids: list[int], repeats: int = 7) -> None:
    """The prefill of each bar of `ids` into the state of the bars before it: the traced
    graph that a session runs (`fast_prefill`) against its eager twin, taking turns."""
    bar_kinds = {i for k, i in cp.tok.structure.id.items() if k.startswith("Bar")}
    starts = [i for i, t in enumerate(ids) if t in bar_kinds] + [len(ids)]
    fast = fast_prefill(cp.model, cp.precision)
    runner = inference_model(cp.model, cp.precision)
    times: dict[str, list[float]] = {"traced": [], "eager": []}
    state = None
    with torch.inference_mode():
        for lo, hi in zip(starts[:-1], starts[1:], strict=True):
            x = torch.tensor([ids[lo:hi]])
            for name, fn in [("traced", fast), ("eager", None)] * repeats:
                t0 = time.perf_counter()
                if fn is None:
                    runner.prefill(x, state, last_only=True)
                else:
                    fn(x, state)
                times[name].append(1000 * (time.perf_counter() - t0))
            state = fast(x, state)[1]
    sizes = np.diff(starts)
    tr, ea = statistics.median(times["traced"]), statistics.median(times["eager"])
    print(
        f"the same {len(sizes)} bars ({sizes.min()}-{sizes.max()} tokens), prefill alone, "
        f"median: traced {tr:.1f} ms, eager twin {ea:.1f} ms ({ea / tr:.2f}x)"
    )


def long_jam(cp: Copilot, bpm: float, bars: int) -> None:
    """A jam of `bars` bars of 16 notes (seeded random pitches): the cost of absorbing a
    bar at its start and at its end (it must not grow with the history)."""
    s = LiveSession(cp, LiveSettings(bpm=bpm, silence_bars=8))
    bar_s = 4 * 60 / bpm
    rng = np.random.default_rng(0)
    for bar in range(bars):
        for j in range(16):
            on = (bar + j / 16) * bar_s
            pitch = int(rng.integers(48, 84))
            s.note_on(on, pitch, 80)
            s.note_off(on + 0.1, pitch)
        s.poll((bar + 0.99) * bar_s)
    a = np.array(s.status["absorb_ms"])
    k = min(50, len(a) // 2)
    print(
        f"a jam of {bars} bars ({len(s.player)} notes): absorbing a bar, median of the first "
        f"{k} {np.median(a[:k]):.1f} ms, of the last {k} {np.median(a[-k:]):.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="1: what `live` and `serve` run on")
    ap.add_argument("--runtime", default="auto", help="auto, onnx or torch")
    ap.add_argument("--bpm", type=float, default=96.0)
    ap.add_argument("--phrase-bars", type=int, default=8)
    ap.add_argument("--jam-bars", type=int, default=400, help="0: no long jam")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model or default_model()
    cp = Copilot(model, threads=args.threads, runtime=args.runtime)
    bar_s = 4 * 60 / args.bpm
    events = phrase_events(args.phrase_bars, args.bpm)
    print(
        f"{model.name} on {cp.engine.runtime}, {args.threads} threads, {args.bpm:g} bpm "
        f"(a bar is {bar_s:.2f} s), "
        f"a phrase of {args.phrase_bars} bars ({sum(e[1] == 'on' for e in events)} notes)"
    )

    rows = []
    absorb: list[float] = []
    for bars in (1, 2, 4):
        s = LiveSession(
            cp, LiveSettings(bpm=args.bpm, bars=bars, silence_bars=8), sampling=Sampling(seed=bars)
        )
        play_phrase(s, events, until=args.phrase_bars * bar_s + 0.3)
        absorb += s.status["absorb_ms"]
        rows.append((bars, answer_in_real_time(s, args.phrase_bars * bar_s + 0.3)))

    print(f"\n{'answer':<10}{'first note ready':>18}{'notes':>8}{'late':>6}{'worst lag':>12}")
    for bars, r in rows:
        print(
            f"{bars} bar{'s' if bars > 1 else ' ':<5}{r['first_ms']:>15.1f} ms{r['notes']:>8}"
            f"{r['late']:>6}{r['worst_lag_ms']:>9.0f} ms"
        )
    print("(worst lag < 0: every note was ready that long before its time at least)")

    a = np.array(absorb)
    print(
        f"\nabsorbing a bar ({len(a)} bars): median {np.median(a):.1f} ms, "
        f"p90 {np.percentile(a, 90):.1f} ms, max {a.max():.1f} ms"
    )

    # Baseline: read the whole history again at the trigger, as a stateless model must.
    s = LiveSession(cp, LiveSettings(bpm=args.bpm, silence_bars=8))
    play_phrase(s, events, until=args.phrase_bars * bar_s + 0.3)
    bar_ids = s.ids
    twin_rows(cp, bar_ids)
    runner = inference_model(cp.model, cp.precision)
    print(
        f"\n{'history':<12}{'read again at the trigger':>28}"
        f"{'incremental (one bar)':>24}{'ratio':>8}"
    )
    for reps in (1, 4, 16):
        ids = torch.tensor([bar_ids * reps])
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            with torch.inference_mode():
                runner.prefill(ids, last_only=True)
            times.append(1000 * (time.perf_counter() - t0))
        whole = statistics.median(times)
        bars = args.phrase_bars * reps
        print(
            f"{bars:>4} bars{'':<4}{whole:>25.1f} ms{np.median(a):>21.1f} ms"
            f"{whole / np.median(a):>7.1f}x"
        )
    if args.jam_bars:
        print()
        long_jam(cp, args.bpm, args.jam_bars)


if __name__ == "__main__":
    main()
