"""`pianomuse eval`: likelihood and music statistics of continuations, as a table and JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
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


def test_harmony_and_form_against_reference_rows(trained_model, tmp_path):
    from conftest import POP909
    from pianomuse.copilot import Copilot
    from pianomuse.data.files import find_midi_files
    from pianomuse.evaluation.form import form_report

    songs = find_midi_files(POP909)
    rep = form_report(Copilot(trained_model), songs, context=12, new=4, candidates=2)
    rows = rep["rows"]
    assert rep["songs"] == len(songs)
    truth, repeat, other = (
        rows[r] for r in ("true continuation", "repeat the last bars", "another song")
    )
    # The annotated chords describe the true continuation far better than another song's.
    assert truth["chord_fit"] > 0.85 and truth["bass_fit"] > 0.8
    assert truth["chord_fit"] > repeat["chord_fit"] > other["chord_fit"]
    assert truth["bass_fit"] > other["bass_fit"]
    # Repeating the last bars reuses the context's material by construction.
    assert repeat["material_reuse"] > truth["material_reuse"] > other["material_reuse"]
    for name, values in rows.items():
        assert values["metre_kept"] is not None, name
        assert all(v is None or 0.0 <= v <= 1.0 for v in values.values()), name
    for name in ("true continuation", "repeat the last bars", "another song"):
        assert None not in rows[name].values(), name
    assert 0 < rep["bits_per_note"] < 30 and rep["bits_per_second"] > rep["bits_per_note"]


def test_harmony_metrics_on_hand_made_notes():
    from pianomuse.evaluation.harmony import (
        bar_sets,
        bass_fit,
        chord_fit,
        chord_spans,
        material_reuse,
        metre_kept,
    )
    from pianomuse.harmony import Chord

    changes = [(0.0, Chord(0, "maj")), (2.0, Chord(7, "maj", 11)), (4.0, Chord(None))]
    spans = chord_spans(changes, 0.0, 6.0)
    assert [(a, b, c.label()) for a, b, c in spans] == [(0, 2, "C:maj"), (2, 4, "G:maj/B")]
    n = {
        "onset": np.array([0.0, 0.0, 1.0, 2.0, 2.0, 4.0]),
        "duration": np.array([2.0, 1.0, 1.0, 2.0, 2.0, 2.0]),
        "pitch": np.array([48, 64, 62, 59, 74, 61]),  # C, E, D (not in C), B, D; C# under N
    }
    # Inside chords: C 2 + E 1 + D 1 (outside) + B 2 + D 2 = 8 beats, 7 on chord tones.
    assert chord_fit(n, spans) == 7 / 8
    assert bass_fit(n, spans) == 1.0  # C under C, B (the bass) under G/B
    lines = np.array([0.0, 4.0, 8.0])
    bars = bar_sets(n, lines)
    assert material_reuse(bars[:1], bars) == 1.0 and material_reuse([set()], bars) is None
    assert metre_kept([4.0, 2.0], [4.0, 4.0, 3.0]) == 0.5


def test_harmony_and_form_of_infills(trained_model):
    from conftest import POP909
    from pianomuse.copilot import Copilot
    from pianomuse.data.files import find_midi_files
    from pianomuse.evaluation.form import form_report

    songs = find_midi_files(POP909)[:3]
    rep = form_report(Copilot(trained_model), songs, context=8, new=2, candidates=2, infill=True)
    assert rep["kind"] == "infill" and rep["songs"] == 3 and rep["bits_per_note"] is None
    model = rep["rows"]["model"]
    assert 0.0 <= model["chord_fit"] <= 1.0 and model["metre_kept"] == 1.0
    assert rep["rows"]["true continuation"]["chord_fit"] > rep["rows"]["another song"]["chord_fit"]


def test_form_of_a_model_that_takes_chords_and_parts(trained_model):
    from conftest import POP909
    from pianomuse.copilot import Copilot
    from pianomuse.data.files import find_midi_files
    from pianomuse.evaluation.form import STEERED, form_report

    songs = find_midi_files(POP909)[:2]
    rep = form_report(Copilot(trained_model), songs, context=8, new=2, candidates=1)
    rows = rep["rows"]
    assert set(STEERED) <= set(rows)
    assert rows["model, true chords given"]["chord_fit"] is not None
    assert rows["accompaniment to the true melody"]["chord_fit"] is not None
    assert rows["model, true chords given"]["metre_kept"] == 1.0


def test_texture_broken_on_hand_made_notes():
    from pianomuse.evaluation.form import texture_broken

    def notes(pitches: list[int]) -> dict:
        return {"pitch": np.array(pitches)}

    recent = notes([40, 48, 55, 60, 64] * 4)  # 5 notes a bar over 4 bars, bass about E2
    assert texture_broken(notes([41, 50, 57, 62, 65] * 2), 2, recent, 4) == 0.0  # same kind
    assert texture_broken(notes([28, 48, 55, 60, 64] * 2), 2, recent, 4) == 1.0  # bass drops
    assert texture_broken(notes([40, 48, 55, 60, 64] * 5), 2, recent, 4) == 1.0  # 2.5x busier
    assert texture_broken(notes([40, 60] * 2), 2, recent, 4) == 1.0  # 0.4x as busy
    assert texture_broken(notes([]), 2, recent, 4) == 1.0  # silence


def test_another_song_is_never_the_song_itself(trained_model):
    """With one song there is no other song: that row is left empty, not filled with the
    song's own bars (which would score like the truth)."""
    from conftest import POP909
    from pianomuse.copilot import Copilot
    from pianomuse.evaluation.form import form_report

    rep = form_report(
        Copilot(trained_model), [POP909 / "003" / "003.mid"], context=8, new=2, candidates=1
    )
    assert rep["songs"] == 1
    assert set(rep["rows"]["another song"].values()) == {None}
    assert rep["rows"]["true continuation"]["chord_fit"] is not None


def test_bars_looped_on_hand_made_bars():
    from pianomuse.evaluation.harmony import bars_looped

    a, b, c = {(60, 0)}, {(62, 0)}, {(64, 4)}
    assert bars_looped([a, a, a, a]) == 1.0  # one bar over and over
    assert bars_looped([a, b, a, b]) == pytest.approx(2 / 3)  # a two-bar loop, from bar 3
    assert bars_looped([a, b, c, a]) == 0.0  # a comes back after three bars: form, not a loop
    assert bars_looped([a, set(), set()]) == 0.0  # silence is no loop
    assert bars_looped([a]) is None
