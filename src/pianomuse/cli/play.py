"""Commands that keep the copilot running: the web copilot and the live jam."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pianomuse.cli.common import ModelChoice, Opt, app, copilot_command, model_options, user_errors
from pianomuse.errors import FieldError, UserError
from pianomuse.steering import NO_STEERING, Steering

if TYPE_CHECKING:
    from pianomuse.generate.sampling import Sampling


@app.command()
@user_errors
@model_options
def serve(
    host: Annotated[str, Opt(help="Address to listen on (localhost only by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, Opt(help="TCP port.")] = 8000,
    model: ModelChoice = None,  # --model, --device, --precision (`model_options`)
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
    copilot = model.copilot(parts=True, session=True)  # the page steers by chords, accompanies
    copilot.warm_up()  # the first user does not wait for the int8 copy and the traced step
    asgi = web_app(copilot, limits, hosts)
    shown = f"[{host}]" if ":" in host else host
    name = copilot.model_info["model"]
    typer.echo(f"Piano Muse is at http://{shown}:{port}/ (model {name}; Ctrl-C stops it)")
    serve_forever(asgi, host, port)


@copilot_command
def live(
    in_: Annotated[str | None, Opt("--in", help="MIDI input (your keyboard, or a DAW).")] = None,
    out: Annotated[str | None, Opt("--out", help="MIDI output (a synthesiser, or a DAW).")] = None,
    virtual: Annotated[
        bool, Opt(help="Open virtual ports (named by --in/--out) a DAW can route to and from.")
    ] = False,
    list_ports: Annotated[bool, Opt("--list-ports", help="List the MIDI ports and stop.")] = False,
    midi_api: Annotated[
        str, Opt("--midi-api", help="auto, alsa, jack, coremidi or windows (python-rtmidi's).")
    ] = "auto",
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
    model: ModelChoice = None,  # --model, --device, --precision (`model_options`)
    sampling: Sampling = None,  # the sampling options (`sampling_options`)
    steering: Steering = NO_STEERING,
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
    from pianomuse.live import LiveSession, LiveSettings
    from pianomuse.live import ports as midi

    if list_ports:
        inputs, outputs = midi.list_ports(midi_api)
        typer.echo("inputs:  " + (", ".join(inputs) or "none"))
        typer.echo("outputs: " + (", ".join(outputs) or "none"))
        return
    if not virtual and (in_ is None or out is None):
        raise UserError("give --in and --out (see --list-ports), or --virtual")
    # Every setting is checked before a port opens; with 'clock' the tempo comes after.
    tempo = _tempo(bpm)
    settings = LiveSettings(
        metre=metre, bars=bars, silence_bars=silence_bars, trigger_note=trigger_note, mode=mode
    )
    settings = replace(settings, bpm=tempo) if tempo is not None else settings
    inport, outport = midi.open_ports(in_, out, virtual, midi_api)
    if tempo is None:
        settings = replace(settings, bpm=midi.follow_clock(inport))
    typer.echo("Getting the model ready (a few seconds)...")
    parts = mode == "accompany" or steering.chords is not None
    copilot = model.copilot(parts=parts, session=True)
    session = LiveSession(copilot, settings, steering=steering, sampling=sampling)
    typer.echo(f"Jamming at {settings.bpm:.0f} bpm in {metre}; Ctrl-C ends and saves {jam}")
    until = (lambda t: False) if seconds is None else (lambda t: t >= seconds)
    data = midi.play(session, inport, outport, until=until, click=click, trigger_cc=trigger_cc)
    write_bytes_atomic(data, jam)
    s = session.status
    typer.echo(f"{jam}: {s['answers']} answers, {s['dropped']} events dropped")


def _tempo(bpm: str) -> float | None:
    """--bpm as beats a minute; None for 'clock'."""
    if bpm == "clock":
        return None
    try:
        return float(bpm)
    except ValueError:
        raise FieldError("bpm", f"takes beats a minute or 'clock', not {bpm!r}") from None
