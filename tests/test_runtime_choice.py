"""Which engine the copilot runs on: ONNX Runtime where the model's export lies beside it and
was made from this very file, PyTorch otherwise; the two engines give the same logits; the
bundled models ship with their exports; and the copilot's commands run in a process where
torch cannot be imported at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import POP909
from pianomuse.bundled import default_model
from pianomuse.cli import app
from pianomuse.cli.common import ModelChoice
from pianomuse.copilot import Copilot, Sampling
from pianomuse.live import LiveSession, LiveSettings
from pianomuse.model import load_model, save_model
from pianomuse.model.engine import TorchEngine
from pianomuse.modelfiles import export_folder, export_matches
from pianomuse.runtime import OnnxEngine, OnnxModel
from pianomuse.threads import max_threads
from test_live import BAR_S, drive, phrase

SONG = POP909 / "004" / "004.mid"


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory):
    """A copy of the tiny trained model with its export beside it (fp32 and int8)."""
    path = tmp_path_factory.mktemp("exported") / "tiny.safetensors"
    shutil.copy(trained_model, path)
    r = CliRunner().invoke(app, ["export", "--model", str(path)])
    assert r.exit_code == 0, r.output
    assert export_matches(path, "int8") and export_matches(path, "fp32")
    return path


@pytest.mark.parametrize("parts", [False, True])
def test_the_bundled_models_ship_with_their_own_export(parts):
    path = default_model(parts)
    assert export_matches(path, "int8"), f"run `pianomuse export --model {path} --precisions int8`"
    assert Copilot(path).engine.runtime == "onnx"
    # A command runs ONNX Runtime on one thread unless told (`inference_threads`).
    cp = ModelChoice(None).copilot(parts)
    assert cp.engine.runtime == "onnx" and cp.weights.threads == 1
    assert (
        ModelChoice(None, threads=2 if max_threads() > 1 else 1).copilot(parts).weights.threads > 1
        or max_threads() == 1
    )


def test_the_export_beside_a_model_is_run_and_a_stale_one_is_not(exported, tmp_path):
    cp = Copilot(exported)
    assert cp.engine.runtime == "onnx" and isinstance(cp.engine, OnnxEngine)
    r = cp.complete(SONG, bars=1, candidates=2, sampling=Sampling(seed=2))
    assert r.model_info["runtime"] == "onnx" and all(len(c.tokens) > 5 for c in r.candidates)
    assert Copilot(exported, runtime="torch").engine.runtime == "torch"
    # Other weights under the same name: the export is of another file, so PyTorch runs.
    stale = tmp_path / exported.name
    model = load_model(exported)
    with torch.no_grad():
        model.head.weight.mul_(1.5)
    save_model(model, stale)
    shutil.copytree(export_folder(exported), export_folder(stale))
    assert not export_matches(stale, "int8")
    assert Copilot(stale).engine.runtime == "torch"
    out = CliRunner().invoke(
        app,
        ["complete", str(SONG), "--model", str(stale), "--runtime", "onnx", "-o", str(tmp_path)],
    )
    assert out.exit_code == 1
    assert out.output.strip().splitlines()[-1].startswith(f"error: {stale.name} has no ONNX export")


def test_both_engines_give_the_same_logits(exported):
    """fp32 on both: a context, then steps of a batch of 3 after it."""
    torch_engine = TorchEngine(load_model(exported).eval(), "fp32")
    onnx_engine = OnnxEngine(OnnxModel(export_folder(exported), "fp32"))
    ids = Copilot(exported).read(SONG).ids[:150]
    got, want = onnx_engine.context(ids), torch_engine.context(ids)
    assert np.abs(got[0] - want[0]).max() < 1e-3
    states = [e.expand(s, 3) for e, s in ((onnx_engine, got[1]), (torch_engine, want[1]))]
    for tok in ([5, 9, 11], [7, 7, 30]):
        a, states[0] = onnx_engine.step(np.array(tok), states[0])
        b, states[1] = torch_engine.step(np.array(tok), states[1])
        assert a.shape == (3, torch_engine.facts.vocab_size) and np.abs(a - b).max() < 1e-3


def test_a_live_session_on_onnx_reads_bars_as_one_prefill(exported):
    """Bars read one at a time by the ONNX engine give the state one prefill gives."""
    cp = Copilot(exported, precision="fp32")
    s = LiveSession(cp, LiveSettings(bpm=120.0, silence_bars=4))
    drive(s, phrase(6, first_bar=1), until=7 * BAR_S + 0.1)
    assert s.status["bars_absorbed"] == 6 and len(s.ids) > 60
    logits, _ = OnnxModel(export_folder(exported), "fp32").prefill(np.array([s.ids]))
    assert np.abs(s.logits - logits).max() < 1e-3


def test_the_copilot_runs_where_torch_cannot_be_imported(tmp_path):
    """complete (with a score and audio), infill and chords on the bundled models, in a
    process where `import torch` fails; a command that needs torch says so in one line."""
    code = f"""
import json, sys
sys.modules["torch"] = None  # any import of torch now fails
from pianomuse.cli import app
from pianomuse.cli.common import ModelChoice
def run(*args, code=0):
    try:
        app(list(args))
    except SystemExit as e:
        assert (e.code or 0) == code, (args, e.code)
song, out = {str(SONG)!r}, {str(tmp_path)!r}
outputs = "whole,score,audio,sidecar"
run("complete", song, "--bars", "1", "--candidates", "2", "--outputs", outputs, "-o", out)
run("infill", song, "--bars", "3-4", "--candidates", "1", "-o", out + "/infill")
run("chords", song, "--next", "4", "--candidates", "2")
run("train", "--data-path", out, "--output-dir", out + "/run", code=1)  # one line, no traceback
print(json.dumps({{"torch": [m for m in sys.modules if m.split(".")[0] == "torch"
                            and sys.modules[m] is not None]}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"torch": []}
    side = json.loads((tmp_path / "candidate_1.json").read_text())
    assert side["runtime"] == "onnx" and side["precision"] == "int8"
    assert (tmp_path / "candidate_1.wav").stat().st_size > 10_000
    assert (tmp_path / "candidate_1.musicxml").is_file()
    assert (tmp_path / "infill" / "infill_1.mid").is_file()
    assert "the next 4 bars" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("error: this needs PyTorch")
