"""`pianomuse eval`: likelihood and music statistics of continuations, as a table and JSON."""

from __future__ import annotations

import json
import math

import numpy as np
from typer.testing import CliRunner

from pianomuse.cli import app
from pianomuse.evaluation.music_stats import (
    distance,
    groove_hist,
    pitch_class_hist,
    polyphony,
    stats,
)


def test_music_statistics_on_hand_made_notes():
    n = {
        "onset": np.array([0.0, 0.0, 1.0, 2.5]),
        "duration": np.array([2.0, 1.0, 1.0, 0.5]),
        "pitch": np.array([60, 64, 67, 72]),
        "velocity": np.array([80, 80, 100, 60]),
    }
    assert pitch_class_hist(n).tolist() == [0.5, 0, 0, 0, 0.25, 0, 0, 0.25, 0, 0, 0, 0]
    g = groove_hist(n)
    assert g[0] == 0.5 and g[4] == 0.25 and g[10] == 0.25
    assert polyphony(n) == (2 + 2 + 1) / 3  # at 0: two notes; at 1: 60 and 67; at 2.5: 72
    s = stats(n, bars=1)
    assert s["density"] == 4 and s["pitch_range"] == 12
    assert distance(s, s) == {k: 0.0 for k in s}
    other = dict(n, pitch=n["pitch"] + 1)
    assert distance(s, stats(other, 1))["pitch_classes"] == 1.0


def test_eval_command_reports_likelihood_and_continuations(trained_model, prepared, tmp_path):
    out = tmp_path / "report.json"
    r = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            str(trained_model),
            "--data-path",
            str(prepared),
            "--max-seq-len",
            "256",
            "--samples",
            "2",
            "--context-bars",
            "4",
            "--continuation-bars",
            "2",
            "--json",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["bits_per_token"] == rep["loss"] / math.log(2)
    assert rep["bits_per_note"] > 3 * rep["bits_per_token"]  # a note is >= 3 tokens
    c = rep["continuations"]
    assert c["samples"] == 2 * c["songs"] >= 2
    assert c["token_error_rate"] == 0.0
    for row in ("generated_vs_true", "generated_vs_context", "true_vs_context"):
        assert 0.0 <= c[row]["pitch_classes"] <= 1.0 and 0.0 <= c[row]["groove"] <= 1.0
    assert "pitch classes" in r.output
