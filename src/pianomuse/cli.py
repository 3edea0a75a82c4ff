"""The `pianomuse` command: a thin map from subcommands to typed functions.

Each subcommand's docstring is its help. Errors a user can cause print one line on stderr and
exit with status 1, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pianomuse.bundled import default_model
from pianomuse.errors import FieldError, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Piano Muse: an RWKV-7 piano copilot over REMI tokens.",
)

F = TypeVar("F", bound=Callable)
Opt = typer.Option


# Settings whose command-line option is not named after them.
_OPTION_OF = {"first_bar": "bars", "last_bar": "bars"}


def _message(e: Exception) -> str:
    """A user error's line, naming the option a bad setting came from."""
    if isinstance(e, FieldError):
        return f"--{_OPTION_OF.get(e.field, e.field).replace('_', '-')} {e.problem}"
    return str(e)


def user_errors(fn: F) -> F:
    """Turn the exceptions a user can cause into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
            typer.echo(f"error: {_message(e)}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def prepare(
    data_path: Annotated[
        Path,
        Opt("--data-path", "--data_path", help="Folder of MIDI files (searched recursively)."),
    ] = Path("tests/data/pop909"),
    out: Annotated[Path, Opt(help="Output folder for shards and manifest.")] = Path("prepared"),
    val_fraction: Annotated[float, Opt(help="Share of songs held out for validation.")] = 0.1,
    workers: Annotated[int, Opt(help="Parallel tokenizer processes.")] = 1,
) -> None:
    """Tokenize a MIDI collection into token shards, an index and a manifest.

    A MIDI file with a beat annotation beside it (POP909's beat_midi.txt, or SONG.beats.txt)
    is first re-timed onto its beats. Unusable files are skipped and listed in the manifest.
    """
    from rich.progress import Progress

    from pianomuse.data.prepare import prepare as run

    with Progress(transient=True) as bar:
        task = bar.add_task("tokenizing", total=None)
        manifest = run(
            data_path,
            out,
            val_fraction=val_fraction,
            workers=workers,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    s = manifest["splits"]
    tokens = s["train"]["tokens"] + s["val"]["tokens"]
    typer.echo(
        f"{out}: {len(manifest['files'])} songs "
        f"({s['train']['songs']} train, {s['val']['songs']} val), "
        f"{tokens} tokens; {len(manifest['skipped'])} skipped"
    )
    for item in manifest["skipped"]:
        typer.echo(f"  skipped {item['path']}: {item['reason']}")


@app.command()
@user_errors
def align(
    midi: Annotated[Path, typer.Argument(help="Performed MIDI file.")],
    beats: Annotated[
        Path, typer.Argument(help="Beat file: one beat a line, 'time [flag] downbeat-flag'.")
    ],
    output: Annotated[Path, Opt("-o", "--output", help="Aligned MIDI file to write.")],
) -> None:
    """Re-time a performed MIDI file onto its annotated beats.

    Bars fall on the downbeats, the tempo map follows the beats, and an irregular bar gets its
    own time signature.
    """
    from pianomuse.tokenizer import (
        align_to_beats,
        load_score,
        onset_grid_share,
        read_beats,
        write_midi_atomic,
    )

    score = load_score(midi)
    aligned = align_to_beats(score, read_beats(beats))
    write_midi_atomic(aligned, output)
    typer.echo(
        f"{output}: onsets on the 16th grid {onset_grid_share(score):.1%} -> "
        f"{onset_grid_share(aligned):.1%}"
    )


@app.command("export-pairs")
@user_errors
def export_pairs(
    data_path: Annotated[Path, Opt("--data-path", "--data_path", help="Prepared folder.")],
    output: Annotated[Path, Opt("-o", "--output", help="JSONL file, or a folder with --hf.")],
    split: Annotated[str, Opt(help="train or val.")] = "train",
    max_seq_len: Annotated[
        int, Opt("--max-seq-len", "--max_seq_len", help="Context + completion tokens.")
    ] = 1024,
    seed: Annotated[int, Opt(help="Seed of the split points.")] = 0,
    hf: Annotated[bool, Opt(help="Write a Hugging Face datasets folder instead.")] = False,
) -> None:
    """Export (context, completion) pairs cut at bars, as JSONL or a datasets folder.

    The Hugging Face `datasets` folder needs the `hf` extra.
    """
    from pianomuse.data.export import export_hf, export_jsonl, make_pairs
    from pianomuse.data.shards import TokenShards

    shards = TokenShards(data_path, split)
    pairs = make_pairs(shards, max_seq_len, seed)
    n = (
        export_hf(pairs, shards.tokenizer, output)
        if hf
        else export_jsonl(pairs, shards.tokenizer, output)
    )
    typer.echo(f"{output}: {n} pairs")


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


# Options shared by the commands that use a model.
ModelOpt = Annotated[
    Path | None,
    Opt("--model", "--model_path", "--model-path", help="Model file; default: the bundled model."),
]
TemperatureOpt = Annotated[float, Opt(help="Sampling temperature (0 = greedy).")]
TopPOpt = Annotated[float | None, Opt("--top-p", "--top_p", help="Nucleus sampling mass.")]
TopKOpt = Annotated[int | None, Opt("--top-k", "--top_k", help="Keep the k most likely tokens.")]
SeedOpt = Annotated[int, Opt(help="Random seed: the same seed gives the same MIDI.")]
DeviceOpt = Annotated[str, Opt(help="cpu, cuda, cuda:N or auto.")]
InferencePrecisionOpt = Annotated[
    str | None,
    Opt(help="Weights inference runs on a CPU: int8 (decoding 2-3x faster, the default) or fp32."),
]
ChordsOpt = Annotated[
    str | None,
    Opt(help='Chords of the new bars: "C G Am F" (a bar each, repeated) or "C:2 G:2 Am F".'),
]
KeyOpt = Annotated[
    str | None, Opt(help='Key: "A minor", "D dorian" ... (no note outside its scale).')
]
ScaleOpt = Annotated[
    str | None, Opt(help='Scale as pitch classes instead of a key: "C,D,E,G,A" or "0,2,4,7,9".')
]
ChromaticOpt = Annotated[
    bool, Opt("--chromatic/--no-chromatic", help="Let short notes outside the scale pass by.")
]
RangeOpt = Annotated[str | None, Opt(help="Range of every note: LOW-HIGH, e.g. C2-C6.")]
MelodyRangeOpt = Annotated[
    str | None, Opt("--melody-range", help="Range of the melody part, e.g. C5-C6.")
]
AccompanimentRangeOpt = Annotated[
    str | None, Opt("--accompaniment-range", help="Range of the accompaniment, e.g. C2-C5.")
]
BassRangeOpt = Annotated[
    str | None,
    Opt("--bass-range", help="Range of the bass line (the accompaniment's lowest voice), C2-C3."),
]
DensityOpt = Annotated[
    str | None,
    Opt(help="Notes per bar (a number), or sparser, as-context, busier (0.5x, 1x, 1.5x)."),
]


NO_DEFAULT_MODEL = (
    "no default model is bundled yet; pass --model PATH (a model trained with "
    "`pianomuse train`, e.g. RUN_DIR/best.safetensors)"
)


def _model_path(model: Path | None, parts: bool = False) -> Path:
    """The model to use: the one given, or the bundled default for the job (`parts`: it
    needs chords or parts)."""
    model = model or default_model(parts)
    if model is None:
        raise UserError(NO_DEFAULT_MODEL)
    return model


def _steering(
    chords: str | None,
    key: str | None,
    scale: str | None,
    chromatic: bool,
    ranges: dict[str, str | None],
    density: str | None,
) -> Any:
    """The steering settings, built once here and passed whole."""
    from pianomuse.copilot.steering import Steering

    return Steering.parse(
        chords=chords, key=key, scale=scale, chromatic=chromatic, ranges=ranges, density=density
    )


def _ranges(
    all_: str | None, melody: str | None, accompaniment: str | None, bass: str | None
) -> dict[str, str | None]:
    """The range options as `Steering.parse` takes them."""
    return {"all": all_, "melody": melody, "accompaniment": accompaniment, "bass": bass}


def _sampling(temperature: float, top_p: float | None, top_k: int | None, seed: int) -> Any:
    """The sampling settings, built once here and passed whole."""
    from pianomuse.generate.sampling import Sampling

    return Sampling(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)


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
        _model_path(model),
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


@app.command()
@user_errors
def complete(
    context: Annotated[Path | None, typer.Argument(help="The piece to continue (MIDI).")] = None,
    context_midi: Annotated[
        Path | None, Opt("--context-midi", "--context_midi", help="Same as CONTEXT.")
    ] = None,
    output_dir: Annotated[
        Path, Opt("-o", "--output-dir", "--output_dir", help="Where the candidates go.")
    ] = Path("candidates"),
    model: ModelOpt = None,
    bars: Annotated[int | None, Opt(help="Bars to write (default 8).")] = None,
    max_new_tokens: Annotated[
        int | None,
        Opt("--max-new-tokens", "--max_new_tokens", help="Tokens to write, instead of --bars."),
    ] = None,
    candidates: Annotated[int, Opt(help="Continuations to write, from one prefill.")] = 4,
    temperature: TemperatureOpt = 1.0,
    top_p: TopPOpt = 0.95,
    top_k: TopKOpt = None,
    seed: SeedOpt = 0,
    context_bars: Annotated[
        int | None, Opt("--context-bars", help="Use only the last N bars as context.")
    ] = None,
    chords: ChordsOpt = None,
    key: KeyOpt = None,
    scale: ScaleOpt = None,
    chromatic: ChromaticOpt = False,
    range_: Annotated[str | None, Opt("--range", help="Range of every note: LOW-HIGH.")] = None,
    melody_range: MelodyRangeOpt = None,
    accompaniment_range: AccompanimentRangeOpt = None,
    bass_range: BassRangeOpt = None,
    density: DensityOpt = None,
    device: DeviceOpt = "cpu",
    precision: InferencePrecisionOpt = None,
) -> None:
    """Continue a piano MIDI file by N bars, K candidates at once.

    Candidates are ranked by the model's likelihood; each is written as MIDI (the whole piece
    and the continuation alone), a piano-roll PNG and a JSON sidecar.
    """
    from pianomuse.copilot import Copilot, write

    src = context or context_midi
    if src is None:
        raise UserError("give the MIDI file to continue: pianomuse complete CONTEXT.mid")
    if bars is not None and max_new_tokens is not None:
        raise UserError("use --bars or --max-new-tokens, not both")
    if bars is None and max_new_tokens is None:
        bars = 8
    sampling = _sampling(temperature, top_p, top_k, seed)
    ranges = _ranges(range_, melody_range, accompaniment_range, bass_range)
    steering = _steering(chords, key, scale, chromatic, ranges, density)
    parts = steering.chords is not None
    result = Copilot(_model_path(model, parts), device=device, precision=precision).complete(
        src,
        bars=bars,
        candidates=candidates,
        sampling=sampling,
        context_bars=context_bars,
        max_new_tokens=max_new_tokens,
        steering=steering,
    )
    _summary(result, write(result, output_dir))


@app.command()
@user_errors
def infill(
    song: Annotated[Path, typer.Argument(help="The piece to rewrite a passage of (MIDI).")],
    bars: Annotated[str, Opt(help="Bars to rewrite, 1-based and inclusive: I-J (or I).")],
    output_dir: Annotated[
        Path, Opt("-o", "--output-dir", "--output_dir", help="Where the candidates go.")
    ] = Path("infills"),
    model: ModelOpt = None,
    candidates: Annotated[int, Opt(help="Alternatives to write, from one prefill.")] = 4,
    temperature: TemperatureOpt = 1.0,
    top_p: TopPOpt = 0.95,
    top_k: TopKOpt = None,
    seed: SeedOpt = 0,
    chords: ChordsOpt = None,
    key: KeyOpt = None,
    scale: ScaleOpt = None,
    chromatic: ChromaticOpt = False,
    range_: Annotated[str | None, Opt("--range", help="Range of every note: LOW-HIGH.")] = None,
    melody_range: MelodyRangeOpt = None,
    accompaniment_range: AccompanimentRangeOpt = None,
    bass_range: BassRangeOpt = None,
    density: DensityOpt = None,
    device: DeviceOpt = "cpu",
    precision: InferencePrecisionOpt = None,
) -> None:
    """Rewrite bars I..J of a piece so that they lead into what follows.

    K alternatives, ranked by the model's likelihood, each as MIDI, a piano roll with the gap
    highlighted and a JSON sidecar.
    """
    from pianomuse.copilot import Copilot, write

    i, j = _bar_range(bars)
    sampling = _sampling(temperature, top_p, top_k, seed)
    ranges = _ranges(range_, melody_range, accompaniment_range, bass_range)
    steering = _steering(chords, key, scale, chromatic, ranges, density)
    parts = steering.chords is not None
    result = Copilot(_model_path(model, parts), device=device, precision=precision).infill(
        song, i, j, candidates=candidates, sampling=sampling, steering=steering
    )
    _summary(result, write(result, output_dir, stem="infill"))


@app.command()
@user_errors
def arrange(
    song: Annotated[
        Path | None,
        typer.Argument(help="The piece (MIDI): a melody, or melody and more; none: --chords."),
    ] = None,
    write_: Annotated[
        str, Opt("--write", help="The part to write: accompaniment or melody.")
    ] = "accompaniment",
    bars: Annotated[
        str | None,
        Opt(
            help="Bars to arrange, 1-based and inclusive: I-J (default: all). Without a song: "
            "how many bars to write (default: the progression's)."
        ),
    ] = None,
    tempo: Annotated[float, Opt(help="Without a song: beats a minute.")] = 120.0,
    output_dir: Annotated[
        Path, Opt("-o", "--output-dir", "--output_dir", help="Where the candidates go.")
    ] = Path("arrangements"),
    model: ModelOpt = None,
    candidates: Annotated[int, Opt(help="Alternatives to write, from one prefill.")] = 4,
    temperature: TemperatureOpt = 1.0,
    top_p: TopPOpt = 0.95,
    top_k: TopKOpt = None,
    seed: SeedOpt = 0,
    chords: ChordsOpt = None,
    key: KeyOpt = None,
    bass_range: BassRangeOpt = None,
    density: DensityOpt = None,
    device: DeviceOpt = "cpu",
    precision: InferencePrecisionOpt = None,
) -> None:
    """Keep one part of a piece note for note and write the other for some bars.

    --write accompaniment writes a piano accompaniment under the melody (a one-track file,
    or its track named melody, is the melody); --write melody writes a tune over the
    accompaniment. With no song, --chords alone: an accompaniment pattern, or a tune, over
    the progression (4/4). Needs a model whose tokenizer has parts (version 2).
    """
    from pianomuse.copilot import Copilot, write
    from pianomuse.harmony import parse_progression

    steering = _steering(chords, key, None, False, {"bass": bass_range}, density)
    settings = _sampling(temperature, top_p, top_k, seed)
    if song is None:
        if chords is None:
            raise UserError("arrange needs a song, or --chords to write from")
        if bars is None:
            n = len(parse_progression(chords, 4.0))
        else:  # a count of bars (a range I-J counts J-I+1)
            i, j = _bar_range(bars) if "-" in bars else (1, _bar_range(bars)[0])
            n = j - i + 1
        cp = Copilot(_model_path(model, parts=True), device=device, precision=precision)
        result = cp.sketch(
            bars=n,
            write=write_,
            steering=steering,
            candidates=candidates,
            sampling=settings,
            qpm=tempo,
        )
        _summary(result, write(result, output_dir, stem=write_))
        return
    cp = Copilot(_model_path(model, parts=True), device=device, precision=precision)
    piece = cp.read(song, write=write_)
    i, j = _bar_range(bars) if bars is not None else (1, piece.n_bars)
    result = cp.infill(
        piece, i, j, candidates=candidates, sampling=settings, steering=steering, write=write_
    )
    _summary(result, write(result, output_dir, stem="arrangement"))


def _bar_range(text: str) -> tuple[int, int]:
    """'9-12' -> (9, 12); '5' -> (5, 5)."""
    try:
        first, _, last = text.partition("-")
        return int(first), int(last or first)
    except ValueError:
        raise FieldError("bars", f"takes I-J (e.g. 9-12), not {text!r}") from None


def _summary(result, paths: list[list[Path]]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.stats
    if result.span.kind in ("infill", "arrange"):
        g = result.context["gap"]
        what = "infills" if result.span.kind == "infill" else f"× {result.context['write']}"
        title = f"{len(result.candidates)} {what} of bars {g[0]}-{g[1]}"
    elif result.span.kind == "sketch":
        title = f"{len(result.candidates)} × {result.context['write']}, {result.span.bars} bars"
    else:
        title = f"{len(result.candidates)} candidates after bar {result.span.first_bar}"
    table = Table(title=title)
    for col in ("rank", "mean log-lik", "tokens", "notes", "file"):
        table.add_column(col)
    for c in result.candidates:
        table.add_row(
            str(c.rank),
            f"{c.loglik:.3f}",
            str(len(c.tokens)),
            str(c.new.note_num()),
            str(paths[c.rank - 1][0]),
        )
    con = Console()
    con.print(table)
    total = s.prefill_s + s.decode_s
    ctx = result.context
    read = f"context bars {ctx['first_bar']}-{ctx['last_bar']}" if "first_bar" in ctx else "chords"
    speed = result.seconds_of_music() / max(total, 1e-9)
    con.print(
        f"{read} ({s.prefill_tokens} tokens, prefill {s.prefill_s:.2f}s), "
        f"decode {s.decode_steps} steps in {s.decode_s:.2f}s; {speed:.1f}x real time"
    )
    con.print(f"written to {paths[0][0].parent}")


@app.command()
@user_errors
def serve(
    host: Annotated[str, Opt(help="Address to listen on (localhost only by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, Opt(help="TCP port.")] = 8000,
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
    precision: InferencePrecisionOpt = None,
    queue: Annotated[int, Opt(help="Requests that may wait behind the running one.")] = 4,
    max_candidates: Annotated[int, Opt("--max-candidates", help="Candidates per request.")] = 8,
    max_bars: Annotated[int, Opt("--max-bars", help="Bars per continuation.")] = 32,
    max_seconds: Annotated[
        int, Opt("--max-seconds", help="Time one generation may take before it stops.")
    ] = 120,
    allowed_hosts: Annotated[
        str,
        Opt(
            "--allowed-hosts",
            help="More Host names to answer, comma-separated (* for any); the local names "
            "and the address listened on are always answered.",
        ),
    ] = "",
) -> None:
    """Start the web copilot: a page to upload a piece, hear it, continue or infill it,
    compare candidates and download them; plus its JSON API (schema at /openapi.json).

    Requests whose Host header is not a name of this server get 400 (no page elsewhere can
    reach it through DNS rebinding). SIGTERM or Ctrl-C stop it within seconds, also during a
    generation."""
    import socket

    from pianomuse.copilot import Copilot
    from pianomuse.serve import ServeLimits, web_app
    from pianomuse.serve.run import allowed_hosts as hosts_for
    from pianomuse.serve.run import serve_forever

    limits = ServeLimits(
        max_candidates=max_candidates, max_bars=max_bars, max_seconds=max_seconds, queue=queue
    )
    hosts = hosts_for(host, [h.strip() for h in allowed_hosts.split(",") if h.strip()])
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); try --port") from None
    model = _model_path(model, parts=True)  # the page steers by chords and accompanies
    copilot = Copilot(model, device=device, precision=precision)
    copilot.warm_up()  # the first user does not wait for the int8 copy and the traced step
    asgi = web_app(copilot, limits, hosts)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"Piano Muse is at http://{shown}:{port}/ (model {model.name}; Ctrl-C stops it)")
    serve_forever(asgi, host, port)


@app.command()
@user_errors
def live(
    in_: Annotated[str | None, Opt("--in", help="MIDI input (your keyboard, or a DAW).")] = None,
    out: Annotated[str | None, Opt("--out", help="MIDI output (a synthesiser, or a DAW).")] = None,
    virtual: Annotated[
        bool, Opt(help="Open virtual ports (named by --in/--out) a DAW can route to and from.")
    ] = False,
    list_ports: Annotated[bool, Opt("--list-ports", help="List the MIDI ports and stop.")] = False,
    bpm: Annotated[str, Opt(help="Tempo in beats a minute, or 'clock' to follow MIDI clock.")] = (
        "96"
    ),
    metre: Annotated[str, Opt(help="Time signature of the bars.")] = "4/4",
    bars: Annotated[int, Opt(help="Bars of each answer.")] = 4,
    mode: Annotated[
        str,
        Opt(help="answer (call and response) or accompany (an accompaniment under your tune)."),
    ] = "answer",
    silence_bars: Annotated[
        float, Opt("--silence-bars", help="Your silence, in bars, that asks for an answer.")
    ] = 1.0,
    trigger_note: Annotated[
        int | None, Opt("--trigger-note", help="A key that asks for an answer at once.")
    ] = None,
    trigger_cc: Annotated[
        int | None, Opt("--trigger-cc", help="A pedal (controller number, 64, 67 ...) that asks.")
    ] = None,
    click: Annotated[bool, Opt("--click/--no-click", help="A metronome on the drum channel.")] = (
        True
    ),
    jam: Annotated[Path, Opt(help="Where the jam is saved (MIDI) when it ends.")] = Path("jam.mid"),
    seconds: Annotated[
        float | None, Opt(help="End after this many seconds (default: at Ctrl-C).")
    ] = None,
    model: ModelOpt = None,
    temperature: TemperatureOpt = 1.0,
    top_p: TopPOpt = 0.95,
    seed: SeedOpt = 0,
    chords: ChordsOpt = None,
    key: KeyOpt = None,
    density: DensityOpt = None,
    precision: InferencePrecisionOpt = None,
) -> None:
    """Jam with the copilot through MIDI ports: play a phrase, stop, and it answers in time.

    Your notes go into the model bar by bar as you play; after a bar of silence (or
    --trigger-note / --trigger-cc) it answers --bars bars from the next bar line, and stops
    when you play again. With --mode accompany it plays an accompaniment under your tune
    instead, bar by bar from your third bar (a model with parts). Ctrl-C ends the jam and
    saves it (you and the copilot as two tracks).
    """
    from dataclasses import replace

    from pianomuse.atomic import write_bytes_atomic
    from pianomuse.copilot import Copilot
    from pianomuse.live import LiveSession, LiveSettings
    from pianomuse.live import ports as midi

    if list_ports:
        inputs, outputs = midi.list_ports()
        typer.echo("inputs:  " + (", ".join(inputs) or "none"))
        typer.echo("outputs: " + (", ".join(outputs) or "none"))
        return
    if not virtual and (in_ is None or out is None):
        raise UserError("give --in and --out (see --list-ports), or --virtual")
    steering = _steering(chords, key, None, False, {}, density)
    sampling = _sampling(temperature, top_p, None, seed)
    tempo = None
    if bpm != "clock":
        try:
            tempo = float(bpm)
        except ValueError:
            raise FieldError("bpm", f"takes beats a minute or 'clock', not {bpm!r}") from None
    # Every setting is checked before a port opens; with 'clock' the tempo comes after.
    settings = LiveSettings(
        metre=metre, bars=bars, silence_bars=silence_bars, trigger_note=trigger_note, mode=mode
    )
    if tempo is not None:
        settings = replace(settings, bpm=tempo)
    inport, outport = midi.open_ports(in_, out, virtual)
    if tempo is None:
        settings = replace(settings, bpm=midi.follow_clock(inport))
    typer.echo("Getting the model ready (a few seconds)...")
    session = LiveSession(
        Copilot(
            _model_path(model, parts=mode == "accompany" or chords is not None),
            precision=precision,
        ),
        settings,
        steering=steering,
        sampling=sampling,
    )
    typer.echo(f"Jamming at {settings.bpm:.0f} bpm in {metre}; Ctrl-C ends and saves {jam}")
    data = midi.play(
        session,
        inport,
        outport,
        until=lambda t: seconds is not None and t >= seconds,
        click=click,
        trigger_cc=trigger_cc,
    )
    write_bytes_atomic(data, jam)
    s = session.status
    typer.echo(f"{jam}: {s['answers']} answers, {s['dropped']} events dropped")


def main() -> None:
    """Entry point of the console script."""
    app(prog_name="pianomuse")


if __name__ == "__main__":
    sys.exit(main())
