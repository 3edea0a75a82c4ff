"""Commands on data: prepare a collection, align a performance to its beats, export pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pianomuse.cli.common import Opt, app, user_errors


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
