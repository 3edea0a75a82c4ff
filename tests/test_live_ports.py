"""`pianomuse live` through real MIDI ports: a JACK server of the test's own (its dummy driver
needs no sound hardware; `.ci/run` installs Debian's jackd2), the live command's virtual ports
on it, and a client that plays into them and listens to the answer, as a keyboard and a
synthesiser would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mido
import pytest
import rtmidi

from pianomuse.tokenizer import load_score
from test_live import phrase

ROOT = Path(__file__).resolve().parent.parent
TRIGGER = 108  # the key that asks for an answer at once

pytestmark = pytest.mark.skipif(
    shutil.which("jackd") is None or shutil.which("jack_wait") is None,
    reason="needs JACK's server and tools (.ci/run installs Debian's jackd2)",
)


@pytest.fixture(scope="module", autouse=True)
def jack_server(tmp_path_factory) -> Iterator[str]:
    """A JACK server named for this test process, started here and stopped after the module.

    A server shared with the machine (one started by the CI script) can stop or restart while
    the suite runs, and the tests then fail on a missing server; a private one lives exactly as
    long as the tests that use it, and its own output explains a failed start. libjack reads
    the server's name from JACK_DEFAULT_SERVER, in this process and in the live command's."""
    name = f"pianomuse-test-{os.getpid()}"
    # Its output goes to a file: a pipe nobody reads would block the server once full.
    log = tmp_path_factory.mktemp("jack") / "jackd.log"
    # A client that misses the server's deadline (500 ms by default) is dropped, and its
    # events with it: on a loaded machine the answer then never reached this process ("CheckRes
    # error"). Ten seconds is far beyond any pause these clients take.
    with log.open("w") as out:
        server = subprocess.Popen(
            ["jackd", "--name", name, "--no-realtime", "--timeout", "10000",
             "-d", "dummy", "-r", "48000", "-p", "256"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    ready = subprocess.run(["jack_wait", "--server", name, "--wait", "--timeout", "20"],
                           capture_output=True, text=True)  # fmt: skip
    if ready.returncode != 0 or server.poll() is not None:
        server.kill()
        server.wait()
        pytest.fail(f"jackd did not start: {log.read_text()[-2000:]}")
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        yield name
        if server.poll() is not None:  # it stopped while the tests ran: say why
            pytest.fail(f"jackd stopped (exit {server.returncode}): {log.read_text()[-2000:]}")
    finally:
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def _live(trained_model: Path, jam: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pianomuse", "live", "--virtual", "--midi-api", "jack",
           "--model", str(trained_model), "--jam", str(jam), "--no-click", *args]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


class _Client:
    """This process's ends of the live command's ports, through python-rtmidi (mido's own
    backend) so that each JACK client has a name of its own: mido's port listing opens and
    closes a client named "RtMidiIn Client" at every call, the name RtMidi gives every
    program's client, and while the live command opened its ports such a clash once failed
    ("Cannot open RtMidiIn Client-01 client")."""

    def __init__(self) -> None:
        tag = os.getpid()
        self.out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=f"test-keys-{tag}")
        self.inp = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name=f"test-synth-{tag}")
        self.inp.ignore_types(sysex=True, timing=True, active_sense=True)
        # One client each, listing ports until the live command's exist, then connected.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            to_live = [i for i, n in enumerate(self.out.get_ports()) if n.endswith("Piano Muse in")]
            from_live = [
                i for i, n in enumerate(self.inp.get_ports()) if n.endswith("Piano Muse out")
            ]
            if to_live and from_live:
                self.out.open_port(to_live[0])
                self.inp.open_port(from_live[0])
                return
            time.sleep(0.1)
        self.close()
        pytest.fail("the live command's ports did not appear")

    def send(self, msg: mido.Message) -> None:
        self.out.send_message(msg.bytes())

    def note_ons(self) -> list[int]:
        """The pitches of the note-ons that arrived since the last call."""
        pitches = []
        while (event := self.inp.get_message()) is not None:
            msg = mido.Message.from_bytes(event[0])
            if msg.type == "note_on" and msg.velocity > 0:
                pitches.append(msg.note)
        return pitches

    def close(self) -> None:
        """Close this process's JACK clients while the server still runs: a client left open
        until the interpreter exits talks to a server the fixture has stopped (a segmentation
        fault, once, under load)."""
        for rt in (self.out, self.inp):
            rt.close_port()
            rt.delete()


def _line(proc: subprocess.Popen, words: str) -> str:
    for line in proc.stdout:
        if words in line:
            return line
    pytest.fail(f"the live command ended before {words!r}")


def test_a_phrase_played_into_the_ports_is_answered_on_them(trained_model, tmp_path):
    """A phrase played in real time into the live command's input port, then the trigger
    key: the answer the saved jam says it played comes back on its output port, and the saved
    jam holds the phrase note for note.

    Timing is measured and printed (README), not asserted: this process and the command
    each start their clock when the command says "Jamming", a moment apart that a loaded
    machine stretches, and a loaded machine delays any real-time answer; that notes are
    sent at their time is `test_live.py`'s test of the port loop, on a clock of its own."""
    jam = tmp_path / "jam.mid"
    proc = _live(trained_model, jam, "--bpm", "120", "--bars", "1", "--seconds", "12",
                 "--trigger-note", str(TRIGGER))  # fmt: skip
    client = None
    try:
        client = _Client()
        _line(proc, "Jamming at 120 bpm")
        t0 = time.perf_counter()
        events = phrase(1)  # bar one of song 002, at 120 bpm: two seconds
        for at, kind, pitch, vel in events:
            time.sleep(max(at - (time.perf_counter() - t0), 0))
            client.send(mido.Message("note_on" if kind == "on" else "note_off", note=pitch,
                                     velocity=vel))  # fmt: skip
        asked = time.perf_counter() - t0
        client.send(mido.Message("note_on", note=TRIGGER, velocity=100))
        heard = []  # (seconds, pitch) of every note-on that comes back, until the command ends
        while proc.poll() is None:
            heard += [(time.perf_counter() - t0, p) for p in client.note_ons()]
            time.sleep(0.001)
        heard += [(time.perf_counter() - t0, p) for p in client.note_ons()]
    finally:
        proc.kill()
        if client is not None:
            client.close()
    assert proc.returncode == 0
    saved = load_score(jam)
    player, answer = saved.tracks[0].notes, saved.tracks[1].notes
    assert len(player) == sum(kind == "on" for _, kind, _, _ in events)
    assert len(answer) > 0
    played = sorted(answer, key=lambda n: (n.time, n.pitch))
    # What comes back is the answer: its pitches, from its first note on. (Note for note
    # equality is the port loop's test in test_live.py: with both cores overloaded, libjack
    # here once delivered a note-on twice and lost another, saying "CheckRes error".)
    assert heard and {p for _, p in heard} <= {n.pitch for n in played}
    assert heard[0][1] in {n.pitch for n in played if n.time == played[0].time}
    due = played[0].time / saved.tpq * 0.5  # seconds at 120 bpm from the command's start
    waited, due_ms = 1000 * (heard[0][0] - asked), 1000 * (due - asked)
    print(f"trigger to first answer note {waited:.0f} ms (due {due_ms:.0f} ms after it)")


def test_the_tempo_follows_midi_clock_sent_over_the_port(trained_model, tmp_path):
    """`--bpm clock`: MIDI clock at 100 bpm (24 a beat) sent into the live command's input
    port as soon as it opens sets the jam's tempo."""
    proc = _live(trained_model, tmp_path / "jam.mid", "--bpm", "clock", "--seconds", "1")
    client = None
    try:
        client = _Client()
        t0, gap = time.perf_counter(), 60 / 100 / 24
        for k in range(int(4 / gap)):  # four seconds: past the two the command listens for
            time.sleep(max(t0 + k * gap - time.perf_counter(), 0))
            client.send(mido.Message("clock"))
        line = _line(proc, "Jamming at")
        proc.wait(timeout=60)
    finally:
        proc.kill()
        if client is not None:
            client.close()
    assert abs(float(line.split("Jamming at ")[1].split(" bpm")[0]) - 100) <= 2
