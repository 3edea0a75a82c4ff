"""MIDI ports for a live session: a keyboard (or a DAW) in, a synthesiser (or the DAW) out.

mido (with python-rtmidi) carries the messages; it is the one MIDI library besides the
tokenizer's, because ports are live input and output, not files. `play` is the loop that
drives a `LiveSession` in real time; it takes any mido-style ports (`iter_pending`, `send`),
so tests run it on in-process ports where the machine has no MIDI subsystem.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mido

from pianomuse.errors import UserError
from pianomuse.live.session import LiveSession

CLICK_NOTE = 37  # General MIDI side stick, on the drum channel: the metronome
DRUMS = 9  # MIDI channel 10
CLOCKS_PER_BEAT = 24  # MIDI clock


# The MIDI systems python-rtmidi speaks, by the names `--midi-api` takes.
APIS = {"auto": "", "alsa": "LINUX_ALSA", "jack": "UNIX_JACK", "coremidi": "MACOSX_CORE",
        "windows": "WINDOWS_MM"}  # fmt: skip


def _backend(api: str = "auto") -> Any:
    if api not in APIS:
        raise UserError(f"--midi-api is one of {', '.join(APIS)}, not {api!r}")
    alsa = api == "alsa" or (api == "auto" and sys.platform.startswith("linux"))
    if alsa and not Path("/dev/snd/seq").exists():
        # Checked first: ALSA itself would print its own lines before failing.
        raise UserError(
            "no MIDI subsystem on this machine (Linux without the ALSA sequencer; "
            "with a JACK server running, --midi-api jack)"
        )
    name = "mido.backends.rtmidi" + (f"/{APIS[api]}" if APIS[api] else "")
    try:
        return mido.Backend(name, load=True)
    except Exception as e:  # noqa: BLE001 - whatever the backend raises, one line
        raise UserError(f"no MIDI subsystem on this machine: {e}") from None


def list_ports(api: str = "auto") -> tuple[list[str], list[str]]:
    """The MIDI inputs and outputs this machine has."""
    backend = _backend(api)
    try:
        return backend.get_input_names(), backend.get_output_names()
    except Exception as e:  # noqa: BLE001
        raise UserError(f"no MIDI subsystem on this machine: {e}") from None


def open_ports(
    inp: str | None, out: str | None, virtual: bool = False, api: str = "auto"
) -> tuple[Any, Any]:
    """Open the input and output by name, or with `virtual` create ports of those names
    (default "Piano Muse in/out") that a DAW routes to and from."""
    backend = _backend(api)
    if virtual:
        if sys.platform == "win32":
            raise UserError(
                "Windows has no virtual MIDI ports: create a loopback port (loopMIDI) and pass "
                "its name to --in and --out"
            )
        try:
            # Each port is its own client, named after it: RtMidi's default client names
            # ("RtMidiIn Client") collide with any other RtMidi program on a JACK server,
            # which then renames one of them, and under load that open can fail.
            inp, out = inp or "Piano Muse in", out or "Piano Muse out"
            return (
                backend.open_input(inp, virtual=True, client_name=inp),
                backend.open_output(out, virtual=True, client_name=out),
            )
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot open virtual MIDI ports: {e}") from None
    inputs, outputs = list_ports(api)
    if inp not in inputs:
        raise UserError(f"no MIDI input named {inp!r}; inputs: {', '.join(inputs) or 'none'}")
    if out not in outputs:
        raise UserError(f"no MIDI output named {out!r}; outputs: {', '.join(outputs) or 'none'}")
    return backend.open_input(inp), backend.open_output(out)


def bpm_from_clock(times: list[float]) -> float:
    """The tempo of MIDI clock messages received at `times` (seconds; 24 a beat)."""
    if len(times) < CLOCKS_PER_BEAT + 1:
        raise UserError("no steady MIDI clock on the input (start the DAW's transport)")
    # The mean gap over the whole span, not the median of single gaps: messages read in
    # bursts (a busy loop polls late) have gaps of zero between them, but not in the span.
    gap = (times[-1] - times[0]) / (len(times) - 1)
    return 60.0 / (gap * CLOCKS_PER_BEAT)


def follow_clock(inport: Any, listen_s: float = 2.0) -> float:
    """The tempo of the MIDI clock arriving on `inport` over `listen_s` seconds."""
    times: list[float] = []
    end = time.perf_counter() + listen_s
    while time.perf_counter() < end:
        for msg in inport.iter_pending():
            if msg.type == "clock":
                times.append(time.perf_counter())
        time.sleep(0.0005)
    return bpm_from_clock(times)


def play(
    session: LiveSession,
    inport: Any,
    outport: Any,
    *,
    until: Callable[[float], bool],
    clock: Callable[[], float] = time.perf_counter,
    click: bool = False,
    trigger_cc: int | None = None,
    on_note: Callable[[str, Any], None] | None = None,
) -> bytes:
    """Run the jam until `until(seconds)` is true (or Ctrl-C): messages from `inport` go
    into the session, its answers go out on `outport` at their times; the jam as MIDI.
    `trigger_cc` is a controller (64 sustain, 67 soft pedal ...) that asks for an answer."""
    t0 = clock()
    due: list[tuple[float, int, Any]] = []  # (time, order, message): the answer to send
    sounding: set[int] = set()
    order = 0
    next_click = 0.0
    now = 0.0
    try:
        while not until(now):
            now = clock() - t0
            for msg in inport.iter_pending():
                if msg.type == "note_on":
                    for o in session.note_on(now, msg.note, msg.velocity):
                        if o.kind == "cancel":  # the player is back: silence the answer
                            due.clear()
                            for p in sounding:
                                outport.send(mido.Message("note_off", note=p))
                            sounding.clear()
                elif msg.type == "note_off":
                    session.note_off(now, msg.note)
                elif msg.type == "control_change" and msg.control == trigger_cc and msg.value:
                    session.trigger(now)
            for o in session.poll(now):
                if o.kind == "note":
                    on = mido.Message("note_on", note=o.pitch, velocity=o.velocity)
                    off = mido.Message("note_off", note=o.pitch)
                    heapq.heappush(due, (o.time, order, on))
                    heapq.heappush(due, (o.off, order + 1, off))
                    order += 2
            while due and due[0][0] <= now:
                _, _, msg = heapq.heappop(due)
                outport.send(msg)
                (sounding.add if msg.type == "note_on" else sounding.discard)(msg.note)
                if on_note is not None:
                    on_note(msg.type, msg)
            if click and now >= next_click:
                outport.send(mido.Message("note_on", channel=DRUMS, note=CLICK_NOTE, velocity=60))
                next_click += session.s.beat_s
            time.sleep(0.001)
    except KeyboardInterrupt:
        pass
    for p in sounding:
        outport.send(mido.Message("note_off", note=p))
    return session.stop(clock() - t0)
