"""`pianomuse eval`: scoring any model on any data with the tokenizer it was trained with.

Two parts:
- likelihood: loss, perplexity, bits per token and bits per note over every window of a
  split (or a MIDI folder);
- continuations: for each song, the first `context_bars` bars are continued by
  `continuation_bars` bars, `samples` times; each continuation is compared with the true
  continuation and with its context in pitch-class histogram, onset-position (groove)
  histogram, note density, polyphony, pitch range and velocity statistics; the true
  continuation's own distance to the context is the reference row; and the token grammar
  error rate of the samples is reported;
- form (on a MIDI folder, whose songs and chord annotations it reads): chord fit, bass fit,
  material reuse and metre kept of the continuations beside the reference rows, and the true
  continuation's bits per note and per second (`evaluation.form`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianomuse.copilot import Copilot
from pianomuse.data.files import find_midi_files
from pianomuse.data.prepare import resolve_data
from pianomuse.data.samples import SampleStream
from pianomuse.data.shards import TokenShards
from pianomuse.errors import UserError
from pianomuse.evaluation.form import form_report
from pianomuse.evaluation.music_stats import distance, stats
from pianomuse.model.checkpoint import load_checkpoint
from pianomuse.tokenizer import Kind, Tokenizer, notes_in_beats
from pianomuse.train.evaluate import evaluate


def evaluate_model(
    model_path: Path,
    data_path: Path,
    split: str = "val",
    max_seq_len: int = 1024,
    batch_size: int = 8,
    max_batches: int | None = None,
    context_bars: int = 12,
    continuation_bars: int = 4,
    samples: int = 0,
    max_songs: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The report of `pianomuse eval` (see the module docstring)."""
    ckpt = load_checkpoint(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        # A MIDI folder is read by the model's own tokenizer (of its version).
        tok = ckpt.tokenizer_config and Tokenizer.from_config(ckpt.tokenizer_config)
        prepared = resolve_data(data_path, Path(tmp), val_fraction=0.0, tokenizer=tok or None)
        midi_folder = None
        if prepared != Path(data_path):  # a MIDI folder: all of it is one split
            midi_folder, data_path, split = Path(data_path), prepared, "train"
        shards = TokenShards(data_path, split)
        if ckpt.tokenizer_hash is not None:
            shards.tokenizer.check_hash(ckpt.tokenizer_hash, what=f"the model {model_path}")
        if len(shards) == 0:
            raise UserError(f"{data_path}: the {split} split has no songs")
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = ckpt.model.to(device)
        r = evaluate(model, SampleStream(shards, max_seq_len), batch_size, max_batches, device)
        st = shards.tokenizer.structure
        n_notes = sum(
            int(np.sum(st.kinds(shards.song(i)) == Kind.PITCH)) for i in range(len(shards))
        )
        report: dict[str, Any] = {
            "songs": len(shards),
            "tokens_scored": int(r["tokens"]),
            "loss": r["loss"],
            "ppl": r["ppl"],
            "bits_per_token": r["bpt"],
            # Windows tile the songs, so tokens per note of the split converts the rate.
            "bits_per_note": r["bpt"] * shards.num_tokens / max(n_notes, 1),
        }
        if samples > 0:
            report["continuations"] = continuation_report(
                model, shards, context_bars, continuation_bars, samples, max_songs, seed
            )
            if midi_folder:  # the songs themselves, with their annotated chords
                cp = Copilot(model, shards.tokenizer)
                songs = find_midi_files(midi_folder)[:max_songs]
                for key, infill in (("form", False), ("form_infill", True)):
                    report[key] = form_report(
                        cp,
                        songs,
                        context=context_bars,
                        new=continuation_bars,
                        candidates=samples,
                        seed=seed,
                        infill=infill,
                    )
    return report


def continuation_report(
    model: Any,
    shards: TokenShards,
    context_bars: int,
    continuation_bars: int,
    samples: int,
    max_songs: int | None,
    seed: int,
) -> dict[str, Any]:
    from pianomuse.copilot import Sampling

    tok = shards.tokenizer
    st = tok.structure
    cp = Copilot(model, tok)
    to_true: list[dict[str, float]] = []
    to_context: list[dict[str, float]] = []
    true_to_context: list[dict[str, float]] = []
    errors: list[float] = []
    songs = 0
    for i in range(min(len(shards), max_songs or len(shards))):
        ids = shards.song(i)
        bars = np.append(st.bar_starts(ids), len(ids))
        if len(bars) - 1 < context_bars + continuation_bars:
            continue
        songs += 1
        context = tok.decode(ids[: bars[context_bars]])
        truth = st.with_header(
            ids[: bars[context_bars + continuation_bars]], int(bars[context_bars])
        )
        ts = context.time_signatures[-1] if len(context.time_signatures) else None
        beats_per_bar = ts.numerator * 4 / ts.denominator if ts else 4.0
        s_ctx = stats(notes_in_beats(context), context_bars, beats_per_bar)
        s_true = stats(notes_in_beats(tok.decode(truth)), continuation_bars, beats_per_bar)
        true_to_context.append(distance(s_true, s_ctx))
        res = cp.complete(
            context,
            bars=continuation_bars,
            candidates=samples,
            sampling=Sampling(seed=seed + i),
        )
        for c in res.candidates:
            s_gen = stats(notes_in_beats(c.new), continuation_bars, beats_per_bar)
            to_true.append(distance(s_gen, s_true))
            to_context.append(distance(s_gen, s_ctx))
            errors.append(tok.tokens_errors(c.tokens))

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}

    return {
        "songs": songs,
        "samples": len(errors),
        "context_bars": context_bars,
        "continuation_bars": continuation_bars,
        "generated_vs_true": mean(to_true),
        "generated_vs_context": mean(to_context),
        "true_vs_context": mean(true_to_context),
        "token_error_rate": float(np.mean(errors)) if errors else 0.0,
    }
