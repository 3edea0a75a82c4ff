"""The inference thread policy: a command that writes music runs on the cores idle when it
starts (one when the others are busy), a session (the server, a live jam) on one, `--threads`
overrides both, and a thread count the machine cannot give is one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pianomuse.cli import app
from pianomuse.cli.common import ModelChoice
from pianomuse.errors import FieldError
from pianomuse.threads import cpu_times, default_threads, max_threads

POP909 = Path(__file__).parent / "data" / "pop909"


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_cores_idle_time_is_read_from_proc_stat():
    stat = (
        "cpu  200 0 100 700 0 0 0 0 0 0\n"
        "cpu0 100 0 50 340 10 0 0 0 0 0\n"
        "cpu1 100 0 50 350 0 0 0 0 0 0\n"
        "intr 12345\n"
    )
    assert cpu_times(stat) == {0: (350, 500), 1: (350, 500)}


def test_with_the_other_cores_busy_the_policy_takes_one_thread():
    """A process spinning on every core but one (a browser, a DAW, a training run): the
    policy sees one idle core at most, and takes one thread."""
    cores = sorted(os.sched_getaffinity(0))
    hogs = [
        subprocess.Popen([sys.executable, "-c",
                          f"import os; os.sched_setaffinity(0, {{{c}}})\nwhile True: pass"])
        for c in cores[1:]
    ]  # fmt: skip
    try:
        time.sleep(0.5)  # the hogs are running
        assert default_threads() == 1
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def test_a_session_runs_on_one_thread_unless_told(trained_model, restore_threads):
    torch.set_num_threads(max_threads())
    ModelChoice(trained_model).copilot(session=True)
    assert torch.get_num_threads() == 1
    ModelChoice(trained_model, threads=max_threads()).copilot(session=True)
    assert torch.get_num_threads() == max_threads()
    ModelChoice(trained_model).copilot()
    assert 1 <= torch.get_num_threads() <= max_threads()


def test_complete_sets_its_threads_and_refuses_impossible_counts(
    trained_model, tmp_path, restore_threads
):
    torch.set_num_threads(max_threads())
    song = str(POP909 / "004" / "004.mid")
    args = ["complete", song, "--model", str(trained_model), "--bars", "1", "-o", str(tmp_path)]
    r = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert torch.get_num_threads() == 1
    for bad in ("0", str(max_threads() + 1)):
        r = CliRunner().invoke(app, [*args, "--threads", bad])
        assert r.exit_code == 1
        assert r.output.strip().splitlines() == [
            f"error: --threads must be between 1 and {max_threads()} (the cores here)"
        ]
    with pytest.raises(FieldError, match="threads"):
        ModelChoice(None, threads=-1)
