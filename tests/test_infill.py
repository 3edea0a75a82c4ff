"""`pianomuse infill` and `Copilot.infill`: the gap is rewritten, nothing else moves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import POP909
from pianomuse.cli import app
from pianomuse.copilot import Copilot, Sampling
from pianomuse.errors import UserError
from pianomuse.tokenizer import Kind, load_score, merge_to_piano, notes_in_beats


def _rows(notes: dict, sel: np.ndarray) -> np.ndarray:
    """Notes as (onset, pitch, duration, velocity) rows in a canonical order."""
    m = np.stack([notes[k][sel] for k in ("onset", "pitch", "duration", "velocity")], axis=1)
    return m[np.lexsort(m.T[::-1])]


@pytest.fixture(scope="module")
def copilot(trained_model):
    return Copilot(trained_model)


@pytest.mark.parametrize("song, first, last", [("001", 5, 8), ("003", 1, 2), ("002", 118, 120)])
def test_gap_is_rewritten_and_everything_else_kept(copilot, song, first, last):
    midi = POP909 / song / f"{song}.mid"
    r = copilot.infill(midi, first, last, candidates=3, sampling=Sampling(seed=4))
    piece = merge_to_piano(load_score(midi))
    tpq = piece.tpq
    start, end = r.span.start_tick / tpq, r.span.end_tick / tpq
    orig = notes_in_beats(piece)
    keep = (orig["onset"] < start) | (orig["onset"] >= end)
    n_bars = last - first + 1
    for c in r.candidates:
        tokens = copilot.tok.structure.kinds(c.tokens)
        assert np.sum(tokens == Kind.BAR) == n_bars and tokens[0] == Kind.BAR
        assert copilot.tok.tokens_errors(c.tokens) == 0.0
        full = notes_in_beats(c.full)
        outside = (full["onset"] < start) | (full["onset"] >= end)
        assert np.allclose(_rows(full, outside), _rows(orig, keep))
        new = notes_in_beats(c.new)
        assert np.allclose(np.sort(full["onset"][~outside]), np.sort(new["onset"] + start))
        assert len(new["onset"]) == 0 or new["onset"].max() < end - start  # ends before the suffix
    assert r.context["gap"] == [first, last]


def test_infill_command_writes_ranked_files(trained_model, tmp_path):
    out = tmp_path / "inf"
    r = CliRunner().invoke(
        app,
        [
            "infill",
            str(POP909 / "004" / "004.mid"),
            "--bars",
            "9-10",
            "--model",
            str(trained_model),
            "-o",
            str(out),
            "--candidates",
            "2",
            "--seed",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "infill_1.json").read_text())
    assert meta["kind"] == "infill" and meta["context"]["gap"] == [9, 10] and meta["bars"] == 2
    assert (out / "infill_2.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "infill_2.json").read_text())["mean_loglik"] <= meta["mean_loglik"]


def test_bad_infill_requests(copilot, trained_model, tmp_path):
    midi = POP909 / "001" / "001.mid"
    with pytest.raises(UserError, match="outside"):
        copilot.infill(midi, 70, 500)
    with pytest.raises(UserError, match="outside"):
        copilot.infill(midi, 0, 2)
    with pytest.raises(UserError, match="longer"):
        copilot.infill(midi, 1, 40)
    (tmp_path / "empty.mid").write_bytes(b"")
    for args, msg in (
        (["--bars", "3-x"], "I-J"),
        (["--bars", "5-2"], "outside"),
    ):
        r = CliRunner().invoke(
            app,
            ["infill", str(midi), "--model", str(trained_model), "-o", str(tmp_path / "o"), *args],
        )
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(
        app, ["infill", str(tmp_path / "empty.mid"), "--bars", "1-2", "--model", str(trained_model)]
    )
    assert r.exit_code == 1 and "empty" in r.output
