"""Does the model use the music after a gap? Infilling on held-out songs.

    uv run python benchmarks/infill_eval.py --model M --data-path PREPARED [--gap-bars 2]

For gaps of `--gap-bars` bars every 8 bars of each validation song, prints the bits per token
of the true middle (teacher-forced, middle tokens and FIM_End) given prefix and suffix, and
given the prefix only (same layout and the same prefix bars, an empty suffix), side by side
with their ratio, for the whole middle and for its last bar, the share of gaps where the
suffix helps and a bootstrap interval of the ratio. `--prefix-bars N` shortens the prefix
to N bars (the suffix matters more when less comes before the gap). Then it
samples one infill per gap and reports the share that leads into the suffix cleanly: the last
bar of the infill has notes (no silent gap before the suffix) and no infill note is still
held when the suffix strikes the same key at the seam (no overlap).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from pianomuse.copilot import Copilot, Sampling
from pianomuse.copilot.prompts import fim_prompt
from pianomuse.data.fim import FimMarkers
from pianomuse.data.shards import TokenShards
from pianomuse.tokenizer import notes_in_beats


@torch.inference_mode()
def middle_bits(
    cp: Copilot, prompt: np.ndarray, middle: np.ndarray, end_id: int, last_bar: int
) -> tuple[float, int, float, int]:
    """Bits of the middle (and FIM_End) after the prompt, teacher-forced: (all bits, tokens,
    bits of the middle's last bar and FIM_End, their tokens); `last_bar` = its first index."""
    seq = torch.as_tensor(np.concatenate([prompt, middle, [end_id]]), dtype=torch.long)[None]
    logits = cp.model(seq[:, :-1]).float()
    logp = torch.log_softmax(logits, -1)[0]
    tgt = seq[0, 1:]
    n = len(middle) + 1
    nll = -logp[-n:].gather(-1, tgt[-n:, None]).squeeze(-1) / math.log(2)  # (n,) bits
    return float(nll.sum()), n, float(nll[last_bar:].sum()), n - last_bar


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data-path", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--gap-bars", type=int, default=2)
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--max-songs", type=int, default=None)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument(
        "--prefix-bars", type=int, default=None, help="at most this many bars before the gap"
    )
    ap.add_argument("--sample", type=int, default=1, help="infills sampled per gap")
    args = ap.parse_args()
    cp = Copilot(args.model, max_context_tokens=args.context)
    shards = TokenShards(args.data_path, args.split)
    st = cp.tok.structure
    end_id = FimMarkers.of(st).end
    bits = {"prefix + suffix": [0.0, 0, 0.0, 0], "prefix only": [0.0, 0, 0.0, 0]}
    gaps: list[tuple[float, float]] = []  # per gap: bits of the middle with, without suffix
    clean = total = 0
    for s in range(min(len(shards), args.max_songs or len(shards))):
        ids = shards.song(s)
        bars = np.append(st.bar_starts(ids), len(ids))
        n_bars = len(bars) - 1
        for i in range(4, n_bars - args.gap_bars - 4, args.every):
            j = i + args.gap_bars
            middle = ids[bars[i] : bars[j]]
            last_bar = int(bars[j - 1] - bars[i])
            # Both prompts get the same prefix bars: only the suffix differs.
            first = fim_prompt(st, ids, i, j, cp.max_context_tokens).first_bar
            if args.prefix_bars is not None:
                first = max(first, i - args.prefix_bars)
            per_gap = []
            for name, with_suffix in (("prefix + suffix", True), ("prefix only", False)):
                prompt = fim_prompt(
                    st, ids, i, j, cp.max_context_tokens, with_suffix=with_suffix, first=first
                ).ids
                got = middle_bits(cp, prompt, middle, end_id, last_bar)
                for k, x in enumerate(got):
                    bits[name][k] += x
                per_gap.append(got[0])
            gaps.append((per_gap[0], per_gap[1]))
            if args.sample:
                piece = cp.tok.decode(ids)
                r = cp.infill(
                    piece, i + 1, j, candidates=args.sample, sampling=Sampling(seed=s * 1000 + i)
                )
                tpq = piece.tpq
                start, end = r.span.start_tick / tpq, r.span.end_tick / tpq
                suffix = notes_in_beats(piece)
                at_seam = set(suffix["pitch"][np.isclose(suffix["onset"], end)].tolist())
                bar_len = (end - start) / args.gap_bars
                for c in r.candidates:
                    new = notes_in_beats(c.new)
                    total += 1
                    last_bar_has_notes = bool(np.any(new["onset"] >= (args.gap_bars - 1) * bar_len))
                    held = new["pitch"][new["onset"] + new["duration"] > end - start + 1e-6]
                    clean += int(last_bar_has_notes and not (set(held.tolist()) & at_seam))
    print(f"{'middle given':<18} {'tokens':>8} {'bits/token':>11} {'last bar, bits/token':>21}")
    for name, (b, n, lb, ln) in bits.items():
        print(f"{name:<18} {n:>8} {b / n:>11.3f} {lb / ln:>21.3f}")
    both, pre = bits["prefix + suffix"], bits["prefix only"]
    whole = (pre[0] / pre[1]) / (both[0] / both[1])
    last = (pre[2] / pre[3]) / (both[2] / both[3])
    print(
        f"prefix-only / prefix+suffix bits per token: {whole:.3f} (middle), {last:.3f} (last bar)"
    )
    g = np.array(gaps)  # [gaps, 2]
    rng = np.random.default_rng(0)
    boot = rng.integers(0, len(g), (2000, len(g)))  # resample gaps, not tokens
    ratios = g[boot, 1].sum(1) / g[boot, 0].sum(1)
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    print(
        f"{len(g)} gaps: the suffix lowers the middle's bits in {np.mean(g[:, 0] < g[:, 1]):.0%} "
        f"of them; ratio 95% interval (bootstrap over gaps) {lo:.3f}-{hi:.3f}"
    )
    if total:
        print(f"infills leading cleanly into the suffix: {clean}/{total} = {clean / total:.1%}")


if __name__ == "__main__":
    main()
