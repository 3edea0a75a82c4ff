"""The copilot: MIDI in, K ranked continuations out (MIDI, piano roll, JSON sidecar).

It glues the layers together: the tokenizer turns MIDI into token ids and back, generation
sees only token ids, and this module chooses the context window, writes the files and keeps
the user's context exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianomuse.data.fim import FimMarkers, arrange
from pianomuse.errors import UserError
from pianomuse.generate.decode import DecodeStats, Sampling, continue_tokens
from pianomuse.generate.grammar import Grammar
from pianomuse.model import RWKV7, load_checkpoint
from pianomuse.render import CONTEXT_COLOUR, NEW_COLOUR, piano_roll_png
from pianomuse.tokenizer import (
    Kind,
    MidiSource,
    PianoTokenizer,
    load_score,
    merge_to_piano,
    notes_in_beats,
)
from pianomuse.tokenizer.compose import bar_tick, decode_bars, in_force, splice
from pianomuse.tokenizer.remi import bar_ticks

DEFAULT_CONTEXT_TOKENS = 1024  # when the model file does not say how long it was trained on
MAX_BARS = 256
MAX_CANDIDATES = 64
MAX_GAP_BARS = 16  # training shows gaps of up to 8 bars; twice that is still sensible


@dataclass
class Candidate:
    """One continuation, ranked by the model's mean log-likelihood of it."""

    rank: int  # 1 = most likely
    index: int  # order of generation (its place in the decoding batch)
    tokens: np.ndarray  # generated token ids
    loglik: float  # mean log p per token, nats
    continuation: Any  # symusic Score of the new bars alone, time 0 = the seam
    full: Any  # symusic Score: the whole piece with the new bars


@dataclass
class Completion:
    """What `Copilot.complete` returns: candidates plus everything needed to reproduce them."""

    candidates: list[Candidate]
    piece: Any  # the context as one piano part (symusic Score), untouched
    seam_tick: int  # where the new bars start, in the piece's ticks
    seam_bar: int  # 0-based bar number of the first new bar
    bars: int | None  # bars written per candidate (None with max_new_tokens)
    context: dict[str, Any]  # window: first bar, last bar (1-based), tokens
    sampling: Sampling
    stats: DecodeStats
    model_info: dict[str, Any] = field(default_factory=dict)
    gap_end_tick: int | None = None  # infill: where the kept music resumes
    piece_bars: int = 0  # bars of the piece as given, as the model counts them
    kind: str = "continuation"  # or "infill"

    def seconds_of_music(self) -> float:
        """Length of one candidate's new music in seconds, at the context's tempo."""
        qpm, (num, den) = in_force(self.piece, self.seam_tick)
        if self.bars is not None:
            beats = self.bars * num * 4 / den
        else:
            beats = max(float(c.continuation.end()) / c.continuation.tpq for c in self.candidates)
        return beats * 60.0 / qpm

    def write(self, out_dir: str | os.PathLike, stem: str = "candidate") -> list[Path]:
        """Write every candidate's files into `out_dir`; all or nothing (a failure leaves no
        partial output behind). Returns the written paths, best candidate first."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".pianomuse-", dir=out))
        except OSError as e:
            raise UserError(f"{out}: cannot write there ({e.strerror})") from None
        names: list[str] = []
        try:
            for c in self.candidates:
                base = f"{stem}_{c.rank}"
                (tmp / f"{base}.mid").write_bytes(c.full.dumps_midi())
                (tmp / f"{base}_continuation.mid").write_bytes(c.continuation.dumps_midi())
                (tmp / f"{base}.png").write_bytes(self._png(c))
                (tmp / f"{base}.json").write_text(json.dumps(self.sidecar(c), indent=1))
                names += [f"{base}.mid", f"{base}_continuation.mid", f"{base}.png", f"{base}.json"]
            for name in names:
                os.replace(tmp / name, out / name)
        except OSError as e:
            for name in names:
                if (out / name).exists() and not (tmp / name).exists():
                    (out / name).unlink(missing_ok=True)
            raise UserError(f"{out}: cannot write there ({e.strerror})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return [out / n for n in names]

    def sidecar(self, c: Candidate) -> dict[str, Any]:
        n = notes_in_beats(c.continuation)
        return {
            "rank": c.rank,
            "candidate_index": c.index,
            "mean_loglik": c.loglik,
            "tokens": len(c.tokens),
            "notes": len(n["pitch"]),
            "bars": self.bars,
            "kind": self.kind,
            "first_new_bar": self.seam_bar + 1,  # 1-based, as musicians count
            "seam_tick": self.seam_tick,
            "context": self.context,
            "sampling": asdict(self.sampling),
            "candidates": len(self.candidates),
            **self.model_info,
        }

    def _png(self, c: Candidate) -> bytes:
        tpq = self.piece.tpq
        first = self.context["first_bar"] - 1
        last = self.context.get("suffix_last_bar", self.seam_bar + (self.bars or 0))
        start_tick = bar_tick(self.piece, first)
        new_end = self.gap_end_tick or (
            bar_tick(self.piece, self.seam_bar + self.bars) if self.bars else c.full.end()
        )
        end_tick = max(bar_tick(self.piece, last), new_end)
        kept = notes_in_beats(self.piece)
        outside = (kept["onset"] < self.seam_tick / tpq) | (kept["onset"] >= new_end / tpq)
        kept = {k: v[outside] for k, v in kept.items()}
        ctx = _clip(kept, start_tick / tpq, end_tick / tpq)
        new = notes_in_beats(c.continuation)
        new["onset"] = new["onset"] + self.seam_tick / tpq
        beats = [t / tpq for t in bar_ticks(c.full) if start_tick <= t <= end_tick]
        label = "infill" if self.kind == "infill" else "continuation"
        return piano_roll_png(
            [(ctx, CONTEXT_COLOUR, "kept"), (new, NEW_COLOUR, label)],
            beats,
            title=f"{label} {c.rank}: mean log-likelihood {c.loglik:.3f}",
            highlight=(self.seam_tick / tpq, new_end / tpq),
            bar_numbers_from=first + 1,
        )


def _clip(notes: dict[str, np.ndarray], start: float, end: float) -> dict[str, np.ndarray]:
    keep = (notes["onset"] >= start) & (notes["onset"] < end)
    return {k: v[keep] for k, v in notes.items()}


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Copilot:
    """Continue (and, later, infill) piano MIDI with one RWKV-7 model.

    >>> cp = Copilot("runs/small/best.safetensors")
    >>> result = cp.complete("song.mid", bars=8, candidates=4, seed=1)
    >>> result.candidates[0].full  # a symusic Score
    """

    def __init__(
        self,
        model: RWKV7 | str | os.PathLike,
        tokenizer: PianoTokenizer | None = None,
        device: str | torch.device | None = None,
        max_context_tokens: int | None = None,
    ):
        self.model_info: dict[str, Any] = {}
        if isinstance(model, RWKV7):
            if tokenizer is None:
                raise UserError("a model object needs its tokenizer: Copilot(model, tokenizer)")
            self.model, self.tok = model, tokenizer
            self.model_info = {"model": "in-memory", "tokenizer_hash": tokenizer.hash}
        else:
            path = Path(model)
            ckpt = load_checkpoint(path)
            if tokenizer is None:
                if ckpt.tokenizer_config is None:
                    raise UserError(f"{path}: the model carries no tokenizer; pass its tokenizer")
                tokenizer = PianoTokenizer.from_config(ckpt.tokenizer_config)
            if ckpt.tokenizer_hash is not None:
                tokenizer.check_hash(ckpt.tokenizer_hash, what=f"the model {path}")
            self.model, self.tok = ckpt.model, tokenizer
            self.model_info = {
                "model": path.name,
                "model_sha256": file_sha(path),
                "tokenizer_hash": tokenizer.hash,
            }
            max_context_tokens = max_context_tokens or getattr(ckpt, "extra", {}).get("max_seq_len")
        if self.model.config.vocab_size != self.tok.vocab_size:
            raise UserError("the model's vocabulary does not match the tokenizer's")
        self.device = torch.device(device) if device else next(self.model.parameters()).device
        self.model.to(self.device).eval()
        self.max_context_tokens = int(max_context_tokens or DEFAULT_CONTEXT_TOKENS)

    # ----- context -----------------------------------------------------------------------
    def load(self, midi: MidiSource) -> tuple[Any, np.ndarray]:
        """The piece as one piano part (its own ticks and tempo map) and its token ids."""
        name = (
            "input"
            if isinstance(midi, bytes) or not isinstance(midi, str | os.PathLike)
            else str(midi)
        )
        piece = merge_to_piano(load_score(midi), name=name)
        return piece, self.tok.encode(piece)

    def window(
        self, ids: np.ndarray, end_bar: int, context_bars: int | None
    ) -> tuple[np.ndarray, int]:
        """Token window of the bars before `end_bar`: the last `context_bars` bars, or as many
        whole bars as fit in the token budget; cut at a bar with the header kept. Returns the
        window and its first bar (0-based)."""
        st = self.tok.structure
        bars = st.bar_starts(ids)
        end = int(bars[end_bar]) if end_bar < len(bars) else len(ids)
        first = max(end_bar - context_bars, 0) if context_bars else 0
        while True:
            w = st.with_header(ids[:end], int(bars[first]))
            if len(w) <= self.max_context_tokens or first >= end_bar - 1:
                break
            first += 1
        if len(w) > self.max_context_tokens:  # one bar longer than the budget: keep its end
            cut = st.safe_cuts(ids[:end])
            start = int(cut[np.searchsorted(cut, end - self.max_context_tokens + 8)])
            w = st.with_header(ids[:end], start)
        return w, first

    # ----- continuation ------------------------------------------------------------------
    def complete(
        self,
        midi: MidiSource,
        bars: int | None = 8,
        candidates: int = 4,
        temperature: float = 1.0,
        top_p: float | None = 0.95,
        top_k: int | None = None,
        seed: int = 0,
        context_bars: int | None = None,
        max_new_tokens: int | None = None,
        grammar: bool = True,
        progress: Callable[[float], None] | None = None,
    ) -> Completion:
        """Continue `midi` (path, bytes or symusic Score) by `bars` bars (or `max_new_tokens`
        tokens), `candidates` at once from one prefill, ranked by mean log-likelihood."""
        if bars is None and max_new_tokens is None:
            raise UserError("ask for --bars or --max-new-tokens")
        if bars is not None and not 1 <= bars <= MAX_BARS:
            raise UserError(f"--bars must be between 1 and {MAX_BARS}")
        if not 1 <= candidates <= MAX_CANDIDATES:
            raise UserError(f"--candidates must be between 1 and {MAX_CANDIDATES}")
        if context_bars is not None and context_bars < 1:
            raise UserError("--context-bars must be at least 1")
        sampling = _sampling(temperature, top_k, top_p, seed)
        piece, ids = self.load(midi)
        st = self.tok.structure
        n_bars = len(st.bar_starts(ids))
        window, first = self.window(ids, n_bars, context_bars)
        seam_tick = bar_tick(piece, n_bars)
        qpm, ts = in_force(piece, seam_tick)
        ts_id = st.header_at(window, len(window)).time_sig
        g = Grammar(st, self.tok.settings.positions_per_beat, ts_id, bars) if grammar else None
        budget = max_new_tokens or bars * 512
        conts, stats = continue_tokens(
            self.model, window, candidates, sampling, st.id["Bar_None"], g, bars, budget, progress
        )
        out = []
        for i, c in enumerate(conts):
            ids_c = c.ids if bars is not None else _whole_notes(st, c.ids)
            score = decode_bars(self.tok, ids_c, piece.tpq, qpm, ts)
            out.append(Candidate(0, i, ids_c, c.loglik, score, splice(piece, score, seam_tick)))
        out.sort(key=lambda c: (-c.loglik, c.index))
        for r, c in enumerate(out, 1):
            c.rank = r
        context = {"first_bar": first + 1, "last_bar": n_bars, "tokens": len(window)}
        return Completion(
            out,
            piece,
            seam_tick,
            n_bars,
            bars,
            context,
            sampling,
            stats,
            self.model_info,
            piece_bars=n_bars,
        )

    def fim_context(
        self, ids: np.ndarray, i: int, j: int, with_suffix: bool = True, first: int | None = None
    ) -> tuple[np.ndarray, int, int, int, int]:
        """The fill-in-the-middle prompt for the gap of bars [i, j) (0-based) of `ids`, up to
        FIM_Middle: the suffix gets up to half the token budget (whole bars from bar j on),
        the prefix the rest (whole bars ending at bar i), or the bars from `first` on. Returns
        (prompt, first prefix bar, end of the suffix bars, prefix tokens, suffix tokens)."""
        st = self.tok.structure
        bars = st.bar_starts(ids)
        n_bars = len(bars)
        edges = np.append(bars, len(ids))
        budget = self.max_context_tokens - 4
        k = j
        if with_suffix:
            while (
                k < n_bars
                and len(st.with_header(ids[: edges[k + 1]], int(edges[j]))) <= budget // 2
            ):
                k += 1
        suffix = st.with_header(ids[: edges[k]], int(edges[j])) if k > j else ids[:0]
        p = 0 if first is None else first
        while p < i and len(st.with_header(ids[: edges[i]], int(edges[p]))) > budget - len(suffix):
            p += 1
        prefix = st.with_header(ids[: edges[i]], int(edges[p])) if p < i else ids[:0]
        prompt, _ = arrange(st, prefix, ids[:0], suffix, FimMarkers.of(st))
        return prompt[:-1], p, k, len(prefix), len(suffix)  # drop the empty middle's FIM_End

    # ----- infilling ---------------------------------------------------------------------
    def infill(
        self,
        midi: MidiSource,
        first_bar: int,
        last_bar: int,
        candidates: int = 4,
        temperature: float = 1.0,
        top_p: float | None = 0.95,
        top_k: int | None = None,
        seed: int = 0,
        progress: Callable[[float], None] | None = None,
    ) -> Completion:
        """Rewrite bars first_bar..last_bar (1-based, inclusive) of `midi` so that they lead
        into the music after them; everything outside the gap is kept note for note."""
        if not 1 <= candidates <= MAX_CANDIDATES:
            raise UserError(f"--candidates must be between 1 and {MAX_CANDIDATES}")
        sampling = _sampling(temperature, top_k, top_p, seed)
        piece, ids = self.load(midi)
        st = self.tok.structure
        bars = st.bar_starts(ids)
        n_bars = len(bars)
        if not 1 <= first_bar <= last_bar <= n_bars:
            raise UserError(f"--bars {first_bar}-{last_bar} is outside the piece's bars 1-{n_bars}")
        n_gap = last_bar - first_bar + 1
        if n_gap > MAX_GAP_BARS:
            raise UserError(
                f"a gap of {n_gap} bars is longer than the {MAX_GAP_BARS} this model can fill"
            )
        i, j = first_bar - 1, last_bar  # gap = bars [i, j), 0-based
        context, p, k, n_prefix, n_suffix = self.fim_context(ids, i, j)
        markers = FimMarkers.of(st)
        ts_id = st.header_at(ids, int(bars[i]) + 2).time_sig  # the gap's first bar's TimeSig
        g = Grammar(st, self.tok.settings.positions_per_beat, ts_id, n_gap, close_id=markers.end)
        conts, stats = continue_tokens(
            self.model,
            context,
            candidates,
            sampling,
            st.id["Bar_None"],
            g,
            n_gap,
            n_gap * 512,
            progress,
        )
        start_tick, end_tick = bar_tick(piece, i), bar_tick(piece, j)
        qpm, ts = in_force(piece, start_tick)
        out = []
        for n, c in enumerate(conts):
            score = decode_bars(self.tok, c.ids, piece.tpq, qpm, ts)
            full = splice(piece, score, start_tick, until_tick=end_tick)
            out.append(Candidate(0, n, c.ids, c.loglik, score, full))
        out.sort(key=lambda c: (-c.loglik, c.index))
        for r, c in enumerate(out, 1):
            c.rank = r
        info = {
            "first_bar": p + 1,
            "last_bar": k,
            "gap": [first_bar, last_bar],
            "prefix_tokens": n_prefix,
            "suffix_tokens": n_suffix,
            "tokens": len(context),
            "suffix_last_bar": k,
        }
        return Completion(
            out,
            piece,
            start_tick,
            i,
            n_gap,
            info,
            sampling,
            stats,
            self.model_info,
            gap_end_tick=end_tick,
            kind="infill",
            piece_bars=n_bars,
        )


def _whole_notes(st: Any, ids: np.ndarray) -> np.ndarray:
    """Cut a token-budgeted continuation after its last whole note."""
    if len(ids) == 0:
        return ids
    return (
        ids[: st.last_cut_at_most(ids, len(ids) - 1)]
        if st.kinds(ids[-1:])[0] != Kind.DURATION
        else ids
    )


def _sampling(temperature: float, top_k: int | None, top_p: float | None, seed: int) -> Sampling:
    try:
        return Sampling(temperature, top_k, top_p, seed)
    except ValueError as e:
        raise UserError(str(e)) from None
