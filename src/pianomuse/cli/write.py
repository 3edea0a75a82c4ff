"""The copilot's commands: continue, infill and arrange a piece."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from pianomuse.cli.common import ModelChoice, Opt, app, copilot_command, user_errors
from pianomuse.errors import FieldError, UserError
from pianomuse.steering import NO_STEERING, Steering

if TYPE_CHECKING:
    from pianomuse.generate.sampling import Sampling


OutputsOpt = Annotated[
    str,
    Opt(
        help="Files to write per candidate, comma-separated: whole, new, roll, sidecar (the "
        "default set), score and new_score (MusicXML: the whole piece, the new bars), audio "
        "and mp3 (the whole piece played on a grand piano: WAV, MP3)."
    ),
]
DEFAULT_OUTPUTS = "whole,new,roll,sidecar"


def _outputs(text: str) -> tuple[str, ...]:
    """The writers named by --outputs, checked before any model loads."""
    from pianomuse.copilot.writers import check_outputs

    return check_outputs([o.strip() for o in text.split(",") if o.strip()])


@copilot_command
def complete(
    context: Annotated[Path | None, typer.Argument(help="The piece to continue (MIDI).")] = None,
    context_midi: Annotated[
        Path | None, Opt("--context-midi", "--context_midi", help="Same as CONTEXT.")
    ] = None,
    output_dir: Annotated[
        Path, Opt("-o", "--output-dir", "--output_dir", help="Where the candidates go.")
    ] = Path("candidates"),
    model: ModelChoice = None,  # --model, --device, --precision (`model_options`)
    bars: Annotated[int | None, Opt(help="Bars to write (default 8).")] = None,
    max_new_tokens: Annotated[
        int | None,
        Opt("--max-new-tokens", "--max_new_tokens", help="Tokens to write, instead of --bars."),
    ] = None,
    candidates: Annotated[int, Opt(help="Continuations to write, from one prefill.")] = 4,
    sampling: Sampling = None,  # the sampling options (`sampling_options`)
    context_bars: Annotated[
        int | None, Opt("--context-bars", help="Use only the last N bars as context.")
    ] = None,
    steering: Steering = NO_STEERING,
    outputs: OutputsOpt = DEFAULT_OUTPUTS,
) -> None:
    """Continue a piano MIDI file by N bars, K candidates at once.

    Candidates are ranked by the model's likelihood; each is written as MIDI (the whole piece
    and the continuation alone), a piano-roll PNG and a JSON sidecar.
    """
    from pianomuse.copilot import write

    chosen = _outputs(outputs)
    src = context or context_midi
    if src is None:
        raise UserError("give the MIDI file to continue: pianomuse complete CONTEXT.mid")
    if bars is not None and max_new_tokens is not None:
        raise UserError("use --bars or --max-new-tokens, not both")
    if bars is None and max_new_tokens is None:
        bars = 8
    # Chords given or planned need the model that reads chords (the planned bars fit the
    # song's harmony better than the other model's free writing: README, plan then write).
    parts = steering.chords is not None or (steering.plan == "auto" and bars is not None)
    result = model.copilot(parts).complete(
        src,
        bars=bars,
        candidates=candidates,
        sampling=sampling,
        context_bars=context_bars,
        max_new_tokens=max_new_tokens,
        steering=steering,
    )
    _summary(result, write(result, output_dir, outputs=chosen))


@copilot_command
def infill(
    song: Annotated[Path, typer.Argument(help="The piece to rewrite a passage of (MIDI).")],
    bars: Annotated[str, Opt(help="Bars to rewrite, 1-based and inclusive: I-J (or I).")],
    output_dir: Annotated[
        Path, Opt("-o", "--output-dir", "--output_dir", help="Where the candidates go.")
    ] = Path("infills"),
    model: ModelChoice = None,  # --model, --device, --precision (`model_options`)
    candidates: Annotated[int, Opt(help="Alternatives to write, from one prefill.")] = 4,
    sampling: Sampling = None,  # the sampling options (`sampling_options`)
    steering: Steering = NO_STEERING,
    outputs: OutputsOpt = DEFAULT_OUTPUTS,
) -> None:
    """Rewrite bars I..J of a piece so that they lead into what follows.

    K alternatives, ranked by the model's likelihood, each as MIDI, a piano roll with the gap
    highlighted and a JSON sidecar.
    """
    from pianomuse.copilot import write

    chosen = _outputs(outputs)
    i, j = _bar_range(bars)
    parts = steering.chords is not None
    result = model.copilot(parts).infill(
        song, i, j, candidates=candidates, sampling=sampling, steering=steering
    )
    _summary(result, write(result, output_dir, stem="infill", outputs=chosen))


@copilot_command
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
    model: ModelChoice = None,  # --model, --device, --precision (`model_options`)
    candidates: Annotated[int, Opt(help="Alternatives to write, from one prefill.")] = 4,
    sampling: Sampling = None,  # the sampling options (`sampling_options`)
    steering: Steering = NO_STEERING,
    outputs: OutputsOpt = DEFAULT_OUTPUTS,
) -> None:
    """Keep one part of a piece note for note and write the other for some bars.

    --write accompaniment writes a piano accompaniment under the melody (a one-track file,
    or its track named melody, is the melody); --write melody writes a tune over the
    accompaniment. With no song, --chords alone: an accompaniment pattern, or a tune, over
    the progression (4/4). Needs a model whose tokenizer has parts (version 2).
    """
    from pianomuse.copilot import write
    from pianomuse.harmony import parse_progression

    chosen = _outputs(outputs)
    if song is None:
        if steering.chords is None:
            raise UserError("arrange needs a song, or --chords to write from")
        if bars is None:
            n = len(parse_progression(steering.chords, 4.0))
        else:  # a count of bars (a range I-J counts J-I+1)
            i, j = _bar_range(bars) if "-" in bars else (1, _bar_range(bars)[0])
            n = j - i + 1
        cp = model.copilot(parts=True)
        result = cp.sketch(
            bars=n,
            write=write_,
            steering=steering,
            candidates=candidates,
            sampling=sampling,
            qpm=tempo,
        )
        _summary(result, write(result, output_dir, stem=write_, outputs=chosen))
        return
    cp = model.copilot(parts=True)
    piece = cp.read(song, write=write_)
    i, j = _bar_range(bars) if bars is not None else (1, piece.n_bars)
    result = cp.arrange(
        piece, i, j, candidates=candidates, sampling=sampling, steering=steering, write=write_
    )
    _summary(result, write(result, output_dir, stem="arrangement", outputs=chosen))


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
def chords(
    song: Annotated[Path, typer.Argument(help="The piece (MIDI); chords beside it are read.")],
    next_: Annotated[int, Opt("--next", help="Bars to plan after the piece.")] = 8,
    candidates: Annotated[int, Opt(help="Progressions to suggest, best first.")] = 3,
) -> None:
    """Print a piece's chords bar by bar, then progressions for the bars after it.

    The chords are the file's annotations where they lie beside it (POP909's chord_midi.txt
    and beat_midi.txt, or SONG.chords.txt and SONG.beats.txt), else what the recogniser hears.
    Each suggestion is in the syntax --chords takes: give it to `pianomuse complete`.
    """
    from pianomuse.bundled import PLANNER_NAME, bundled_file
    from pianomuse.data.files import chord_file_for
    from pianomuse.data.prepare import read_song
    from pianomuse.planner import Selector, bars_text, harmony_of, plan_chords
    from pianomuse.tokenizer import Tokenizer

    if not 1 <= next_ <= 64:
        raise FieldError("next", "must be between 1 and 64 bars")
    if not 1 <= candidates <= 16:
        raise FieldError("candidates", "must be between 1 and 16")
    planner = bundled_file(PLANNER_NAME)
    if planner is None:
        raise UserError("the chord planner is not bundled with this install")
    tok = Tokenizer.latest()
    h = harmony_of(tok, tok.encode(read_song(song)))
    source = "annotated" if chord_file_for(song) is not None else "recognised"
    typer.echo(f"{song.name}: {h.bars} bars, chords {source}")
    for first in range(0, h.bars, 4):
        last = min(first + 4, h.bars)
        beats = np.diff(h.bar_starts[first : last + 1]).tolist()
        codes = h.codes[h.bar_starts[first] : h.bar_starts[last]]
        typer.echo(f"  {first + 1:>4}-{last:<4} | {bars_text(codes, beats)} |")
    beats = [h.beats_per_bar()] * next_
    plans = plan_chords(h, beats, candidates, Selector.load(planner))
    typer.echo(f"the next {next_} bars:")
    for rank, plan in enumerate(plans, 1):
        typer.echo(f"  {rank}. ({plan.expert}) {plan.progression()}")
