"""Commands on models: train, estimate the memory of a step, evaluate, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from pianomuse.cli.common import ModelOpt, Opt, UserError, app, model_path, user_errors

# Options shared by `train` and `estimate-memory`.
PresetOpt = Annotated[str | None, Opt(help="tiny, small, base, or a YAML file.")]
NLayerOpt = Annotated[int | None, Opt(help="Blocks.")]
NEmbdOpt = Annotated[int | None, Opt(help="Width.")]
HeadSizeOpt = Annotated[int | None, Opt(help="Channels per head.")]
ChunkLenOpt = Annotated[int | None, Opt(help="WKV chunk length.")]
MaxSeqLenOpt = Annotated[
    int | None, Opt("--max-seq-len", "--max_seq_len", help="Tokens per window.")
]
BatchSizeOpt = Annotated[
    int | None, Opt("--batch-size", "--batch_size", help="Windows per process per micro-step.")
]
PrecisionOpt = Annotated[str | None, Opt(help="fp32 or bf16.")]


@app.command()
@user_errors
def train(
    data_path: Annotated[
        str, Opt("--data-path", "--data_path", help="Prepared folder or MIDI folder.")
    ],
    output_dir: Annotated[str, Opt("--output-dir", "--output_dir", help="Run folder.")],
    preset: PresetOpt = None,
    pretrained_model: Annotated[
        str | None,
        Opt("--pretrained-model", "--pretrained_model", help="RWKV-7 checkpoint to start from."),
    ] = None,
    n_layer: NLayerOpt = None,
    n_embd: NEmbdOpt = None,
    head_size: HeadSizeOpt = None,
    chunk_len: ChunkLenOpt = None,
    wkv_backend: Annotated[str | None, Opt(help="auto, chunked, reference or fla.")] = None,
    deep_embed: Annotated[
        bool | None, Opt("--deep-embed/--no-deep-embed", help="DeepEmbed channel-mix scale.")
    ] = None,
    max_seq_len: MaxSeqLenOpt = None,
    objective: Annotated[str | None, Opt(help="lm or completion.")] = None,
    max_transpose: Annotated[int | None, Opt(help="Random transposition, ± semitones.")] = None,
    fim_rate: Annotated[float | None, Opt(help="Share of fill-in-the-middle samples.")] = None,
    part_rate: Annotated[
        float | None, Opt(help="Share of part-infilling samples (write one part to the other).")
    ] = None,
    plain_rate: Annotated[
        float | None, Opt(help="Share of windows read as plain piano (parts merged, chords heard).")
    ] = None,
    batch_size: BatchSizeOpt = None,
    grad_accum: Annotated[int | None, Opt(help="Micro-steps per optimizer step.")] = None,
    epochs: Annotated[float | None, Opt(help="Passes over the data (without --max-steps).")] = None,
    max_steps: Annotated[int | None, Opt(help="Optimizer steps.")] = None,
    lr: Annotated[float | None, Opt(help="Peak learning rate.")] = None,
    min_lr_ratio: Annotated[float | None, Opt(help="Final lr / peak lr of the cosine.")] = None,
    warmup_steps: Annotated[int | None, Opt(help="Linear warm-up steps.")] = None,
    weight_decay: Annotated[float | None, Opt(help="AdamW decay of 2-D weights.")] = None,
    grad_clip: Annotated[float | None, Opt(help="Max gradient norm (0 = off).")] = None,
    precision: PrecisionOpt = None,
    compile_model: Annotated[
        bool | None,
        Opt(
            "--compile/--no-compile",
            help="torch.compile the model: ~1 min to start, then faster steps (see README).",
        ),
    ] = None,
    seed: Annotated[int | None, Opt(help="Seed of init and data order.")] = None,
    eval_every: Annotated[int | None, Opt(help="Steps between validations.")] = None,
    eval_batches: Annotated[int | None, Opt(help="Batches per validation.")] = None,
    save_every: Annotated[int | None, Opt(help="Steps between checkpoints.")] = None,
    max_bad_steps: Annotated[
        int | None, Opt(help="Non-finite steps in a row before stopping.")
    ] = None,
    device: Annotated[str | None, Opt(help="auto, cpu or cuda.")] = None,
    tensorboard: Annotated[
        bool | None, Opt("--tensorboard/--no-tensorboard", help="Log to TensorBoard too.")
    ] = None,
    resume: Annotated[bool, Opt(help="Continue from OUTPUT_DIR/last.pt.")] = False,
) -> None:
    """Train or fine-tune an RWKV-7 model on a MIDI collection (works under torchrun).

    Values come from the dataclass defaults, then --preset, then the options given here.
    """
    options = dict(locals())  # exactly the command-line fields, before anything else is bound
    from pianomuse.train.config import make_config
    from pianomuse.train.loop import train as run

    cfg = make_config(options)
    summary = run(cfg)
    val = summary["val"]
    msg = f"{cfg.output_dir}: {summary['steps']} steps, {summary['tokens_per_s']:,.0f} tokens/s"
    if val is not None:
        msg += f", validation loss {val['loss']:.4f} ({val['bpt']:.3f} bits/token)"
    typer.echo(msg)


@app.command("estimate-memory")
@user_errors
def estimate_memory(
    preset: PresetOpt = None,
    model: Annotated[
        Path | None, Opt("--model", help="A model file: its size instead of a preset's.")
    ] = None,
    n_layer: NLayerOpt = None,
    n_embd: NEmbdOpt = None,
    head_size: HeadSizeOpt = None,
    chunk_len: ChunkLenOpt = None,
    batch_size: BatchSizeOpt = None,
    max_seq_len: MaxSeqLenOpt = None,
    precision: PrecisionOpt = None,
    inference: Annotated[bool, Opt(help="A prefill instead of a training step.")] = False,
) -> None:
    """Memory of one training step (or one inference prefill), before any is allocated.

    Weights, gradients, AdamW state, activations and recurrent state, per process. Sizes come
    from --model, or like `train`: the defaults, then --preset, then the options given here.
    """
    from rich.console import Console
    from rich.table import Table

    from pianomuse.model.checkpoint import read_config
    from pianomuse.model.memory import estimate_memory as estimate
    from pianomuse.tokenizer import Tokenizer
    from pianomuse.train.config import make_config

    shape = {"n_layer": n_layer, "n_embd": n_embd, "head_size": head_size}
    tc = make_config(
        {"data_path": "", "output_dir": "", "preset": preset, "chunk_len": chunk_len, **shape}
    )
    if model is not None:
        config = read_config(model)
    else:
        config = tc.model.with_vocab(Tokenizer.latest().vocab_size)
    batch, seq = batch_size or tc.batch_size, max_seq_len or tc.max_seq_len
    prec = precision or tc.precision
    try:
        est = estimate(config, batch, seq, training=not inference, precision=prec)
    except ValueError as e:
        raise UserError(str(e)) from None
    what = "inference prefill" if inference else f"training step ({prec})"
    con = Console()
    con.print(
        f"{what}: {config.n_layer} x {config.n_embd}, {config.n_params() / 1e6:.2f} M "
        f"parameters, batch {batch} x {seq} tokens, chunk {config.chunk_len}"
    )
    table = Table()
    table.add_column("memory")
    table.add_column("MB", justify="right")
    for name, value in est.as_dict().items():
        table.add_row(name, f"{value / 1e6:,.1f}")
    con.print(table)
    con.print(
        "per process (under torchrun, each process needs this on its device); on a CPU the "
        "process's resident memory can reach ~2x the tensor total (allocator caching)"
    )


@app.command("eval")
@user_errors
def eval_(
    data_path: Annotated[
        Path, Opt("--data-path", "--data_path", help="Prepared folder or MIDI folder.")
    ],
    split: Annotated[str, Opt(help="Split of a prepared folder: val or train.")] = "val",
    max_seq_len: Annotated[int, Opt("--max-seq-len", help="Tokens per window.")] = 1024,
    batch_size: Annotated[int, Opt(help="Windows per batch.")] = 8,
    max_batches: Annotated[int | None, Opt(help="Stop after this many batches.")] = None,
    samples: Annotated[
        int, Opt(help="Continuations per song for the music statistics (0 = none).")
    ] = 2,
    context_bars: Annotated[int, Opt(help="Bars of each song given as context.")] = 12,
    continuation_bars: Annotated[int, Opt(help="Bars continued and compared with the truth.")] = 4,
    max_songs: Annotated[int | None, Opt(help="Continue at most this many songs.")] = None,
    json_out: Annotated[Path | None, Opt("--json", help="Also write the report here.")] = None,
    model: ModelOpt = None,
) -> None:
    """Score a model: bits per token and per note, music statistics, harmony and form.

    Works on a prepared split or a MIDI folder. Continuations of each song's opening are
    compared with the true continuation and with their context; on a MIDI folder also by
    chord fit, bass fit, material reuse and metre kept against the songs' chords (annotated
    beside them, else recognised), beside "repeat the last bars" and "another song".
    """
    from pianomuse.evaluation.report import evaluate_model

    report = evaluate_model(
        model_path(model),
        data_path,
        split,
        max_seq_len,
        batch_size,
        max_batches,
        context_bars,
        continuation_bars,
        samples,
        max_songs,
    )
    _print_report(report)
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=1))


@app.command("export")
@user_errors
def export(
    model: ModelOpt = None,
    output: Annotated[
        Path | None, Opt("-o", "--output", help="The folder to write; default: beside the model.")
    ] = None,
    precisions: Annotated[
        str, Opt("--precisions", help="Weights of the graphs: int8, fp32 or both (int8,fp32).")
    ] = "int8,fp32",
) -> None:
    """Export a model for ONNX Runtime: its one-token step and prefill graphs and model.json
    (its config and tokenizer). Written beside the model (X.safetensors -> X.onnx), the
    copilot runs it there without torch."""
    from pianomuse.model.checkpoint import load_model
    from pianomuse.model.export import export_onnx
    from pianomuse.modelfiles import export_folder, file_sha

    path = model_path(model)
    kinds = tuple(p.strip() for p in precisions.split(",") if p.strip())
    out = output or export_folder(path)
    paths = export_onnx(load_model(path), out, source_sha256=file_sha(path), precisions=kinds)
    size = sum(p.stat().st_size for p in paths) / 1e6
    typer.echo(f"{out}: {len(paths)} files, {size:.1f} MB")


def _print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=120)
    for k, v in report.items():
        if k not in ("continuations", "form", "form_infill"):
            con.print(f"{k:<16} {v:.4f}" if isinstance(v, float) else f"{k:<16} {v}")
    c = report.get("continuations")
    if not c:
        return
    table = Table(
        title=f"{c['samples']} continuations of {c['continuation_bars']} bars after "
        f"{c['context_bars']} bars, {c['songs']} songs (lower = closer)"
    )
    table.add_column("distance")
    for name in c["generated_vs_true"]:
        table.add_column(name.replace("_", " "))
    for row in ("generated_vs_true", "generated_vs_context", "true_vs_context"):
        table.add_row(row.replace("_", " "), *(f"{v:.3f}" for v in c[row].values()))
    con.print(table)
    con.print(f"token error rate {c['token_error_rate']:.4f}")
    for key in ("form", "form_infill"):
        if report.get(key):
            _print_form(con, report[key])


def _print_form(con, f: dict) -> None:
    from rich.table import Table

    bars = f"bars {f['context_bars'] + 1}-{f['context_bars'] + f['new_bars']}"
    where = f"after bars 1-{f['context_bars']}" if f["kind"] == "continuation" else "as a gap"
    table = Table(
        title=f"harmony and form, {f['kind']}: {bars} {where}, {f['songs']} songs, "
        f"{f['candidates']} candidates"
    )
    table.add_column("")
    for name in next(iter(f["rows"].values())):
        table.add_column(name.replace("_", " "))
    for row, values in f["rows"].items():
        table.add_row(row, *("-" if v is None else f"{v:.3f}" for v in values.values()))
    con.print(table)
    if f["bits_per_note"] is not None:
        con.print(
            f"true continuation: {f['bits_per_note']:.2f} bits per note, "
            f"{f['bits_per_second']:.1f} bits per second"
        )


@app.command("train-planner")
@user_errors
def train_planner(
    data_path: Annotated[
        Path, Opt("--data-path", "--data_path", help="Prepared folder (tokenizer version 2).")
    ],
    output: Annotated[Path, Opt("-o", "--output", help="The planner file to write.")] = Path(
        "chord_planner.json"
    ),
) -> None:
    """Teach the chord planner which of its experts to trust, on the training songs' chords.

    The planner proposes the chords of new bars from the song itself (copying bars back,
    matching a section that comes back); this fits how it ranks those proposals. Seconds on a
    CPU; the copilot reads the bundled file (models/chord_planner.json).
    """
    from rich.progress import Progress

    from pianomuse.data.shards import TokenShards
    from pianomuse.planner import fit_selector, harmony_of

    shards = TokenShards(data_path, "train")
    tok = shards.tokenizer
    if not tok.has_chords:
        raise UserError(f"{data_path}: prepared without chords (tokenizer version 2 has them)")
    songs = [harmony_of(tok, shards.song(i)) for i in range(len(shards))]
    with Progress(transient=True) as bar:
        task = bar.add_task("learning", total=len(songs))
        selector = fit_selector(songs, progress=lambda n: bar.update(task, completed=n))
    selector.save(output)
    typer.echo(f"{output}: a chord planner fitted on {len(songs)} songs")


@app.command()
@user_errors
def tune(
    folder: Annotated[Path, typer.Argument(help="Your pieces: a folder of MIDI files.")],
    output: Annotated[Path, Opt("-o", "--output", help="The style file to write.")] = Path(
        "my-style.safetensors"
    ),
    model: ModelOpt = None,
    method: Annotated[
        str,
        Opt(
            help="lora (low-rank changes of every layer; README: your style), head (the "
            "output layer) or state (the start state)."
        ),
    ] = "lora",
    minutes: Annotated[float, Opt(help="How long to tune.")] = 10.0,
    seed: Annotated[int, Opt(help="Seed of the windows drawn.")] = 0,
) -> None:
    """Teach the copilot the style of a few of your pieces, on this CPU, in minutes.

    Every fifth piece is held out; its bits per note before and after are printed, and the
    curve is drawn beside the style (STYLE.png). Use it with --style on complete, infill,
    arrange, serve and live; the model file is left as it was.
    """
    from rich.progress import Progress

    from pianomuse.data.files import find_midi_files
    from pianomuse.data.prepare import read_song
    from pianomuse.model import load_model
    from pianomuse.modelfiles import file_sha
    from pianomuse.render import curve_png
    from pianomuse.style import tune as run
    from pianomuse.tokenizer import MidiInputError, Tokenizer

    if not 0 < minutes <= 120:
        raise UserError("--minutes must be more than 0 and at most 120")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of MIDI files")
    path = model_path(model, parts=True)
    base = load_model(path)
    tok = Tokenizer.from_config(base.meta.tokenizer_config, what=f"the model {path.name}")
    pieces, skipped = [], []
    for f in find_midi_files(folder):
        try:
            pieces.append(tok.encode(read_song(f)))
        except (MidiInputError, UserError, OSError) as e:
            skipped.append(f"{f.name} ({e})")
    if len(pieces) < 3:
        raise UserError(f"{folder}: {len(pieces)} readable pieces; tuning needs at least 3")
    held = pieces[::5]
    train = [p for i, p in enumerate(pieces) if i % 5]
    with Progress() as bar:
        task = bar.add_task("tuning", total=1.0)

        def shown(share: float, bits: float | None) -> None:
            bar.update(task, completed=share, description=f"held out: {bits:.2f} bits/note")

        style = run(base, tok, train, held, method=method, minutes=minutes, seed=seed,
                    progress=shown)  # fmt: skip
    style.meta |= {"model": path.name, "model_sha256": file_sha(path)}
    style.save(output)
    curve = np.array(style.meta["curve"])
    png = output.with_suffix(".png")
    png.write_bytes(curve_png(curve[:, 0], curve[:, 1], "minutes", "held-out bits per note"))
    m = style.meta
    typer.echo(
        f"{output}: {m['method']} tuned on {m['pieces']} pieces in {m['minutes']} min; held-out "
        f"{m['held_out']} pieces: {m['bits_per_note_before']:.2f} -> "
        f"{m['bits_per_note_after']:.2f} bits per note (curve: {png})"
    )
    for line in skipped:
        typer.echo(f"  skipped {line}")
