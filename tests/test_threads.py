"""The inference thread policy: every command that writes music runs on one thread unless
`--threads` says otherwise, and a thread count the machine cannot give is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pianomuse.cli import app
from pianomuse.cli.common import ModelChoice
from pianomuse.errors import FieldError
from pianomuse.threads import max_threads

POP909 = Path(__file__).parent / "data" / "pop909"


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_copilot_runs_on_one_thread_unless_told(trained_model, restore_threads):
    torch.set_num_threads(max_threads())
    ModelChoice(trained_model).copilot()
    assert torch.get_num_threads() == 1
    ModelChoice(trained_model, threads=max_threads()).copilot()
    assert torch.get_num_threads() == max_threads()


def test_complete_sets_its_threads_and_refuses_impossible_counts(
    trained_model, tmp_path, restore_threads
):
    torch.set_num_threads(max_threads())
    song = str(POP909 / "004" / "004.mid")
    args = ["complete", song, "--model", str(trained_model), "--bars", "1", "-o", str(tmp_path)]
    r = CliRunner().invoke(app, args)
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
