"""The bundled default model: it loads, matches the bundled tokenizer, and makes valid music."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pianomuse.bundled import default_model
from pianomuse.cli import app
from pianomuse.copilot import Copilot, Sampling
from pianomuse.model import load_checkpoint
from pianomuse.tokenizer import PianoTokenizer, load_score

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pop909_099_opening.mid"


@pytest.fixture(scope="module")
def bundled() -> Path:
    path = default_model()
    assert path is not None and path.is_file()
    return path


def test_bundled_model_and_tokenizer_match(bundled):
    ckpt = load_checkpoint(bundled)
    tok = PianoTokenizer.load(ROOT / "models" / "tokenizer.json")
    assert ckpt.tokenizer_hash == tok.hash == PianoTokenizer().hash
    assert ckpt.model.config.vocab_size == tok.vocab_size
    assert bundled.stat().st_size <= 25 * 1024 * 1024


def test_first_command_continues_the_example(bundled, tmp_path):
    r = CliRunner().invoke(
        app, ["complete", str(EXAMPLE), "-o", str(tmp_path), "--bars", "2", "--candidates", "2"]
    )
    assert r.exit_code == 0, r.output
    assert "written to" in r.output
    meta = json.loads((tmp_path / "candidate_1.json").read_text())
    # Chords planned first, then written: by the bundled model that reads chords.
    assert meta["model"] == default_model(parts=True).name and meta["bars"] == 2
    assert meta["plan"] and [c[1] for c in meta["chords"]][:1] == [meta["plan"].split(":")[0]]
    assert load_score(tmp_path / "candidate_1_continuation.mid").note_num() == meta["notes"] > 0
    r = CliRunner().invoke(
        app,
        ["complete", str(EXAMPLE), "-o", str(tmp_path / "free"), "--bars", "2", "--plan", "off"],
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "free" / "candidate_1.json").read_text())
    assert meta["model"] == bundled.name and meta["plan"] is None


def test_bundled_model_infills_validly(bundled):
    cp = Copilot(bundled)
    r = cp.infill(EXAMPLE, 5, 6, candidates=2, sampling=Sampling(seed=0))
    for c in r.candidates:
        assert cp.tok.tokens_errors(c.tokens) == 0.0
        assert c.new.note_num() > 0


def test_eval_uses_the_bundled_model_by_default(bundled):
    song = ROOT / "tests" / "data" / "pop909" / "006"
    r = CliRunner().invoke(app, ["eval", "--data-path", str(song), "--samples", "0"])
    assert r.exit_code == 0, r.output
    bpt = float(next(ln.split()[1] for ln in r.output.splitlines() if "bits_per_token" in ln))
    assert 1.0 < bpt < 4.0  # the trained model, not an untrained one (~8.6 bits)


def test_bundled_model_records_its_training(bundled):
    summary = load_checkpoint(bundled).training
    assert summary.max_seq_len == 1024 and summary.steps == 1480
    assert summary.tokenizer_hash == PianoTokenizer().hash
    assert Copilot(bundled).max_context_tokens == 1024


def test_the_parts_model_is_bundled_for_chords_and_parts():
    """The version-2 model beside the default: its tokenizer (chords, parts) matches the
    bundled file, and the commands that need chords or parts take it without --model."""
    from pianomuse.tokenizer import PianoTokenizerV2, Tokenizer

    path = default_model(parts=True)
    assert path is not None and path.name != default_model().name
    ckpt = load_checkpoint(path)
    tok = Tokenizer.load(ROOT / "models" / "tokenizer_parts.json")
    assert isinstance(tok, PianoTokenizerV2) and tok.settings.chords and tok.settings.parts
    assert ckpt.tokenizer_hash == tok.hash == PianoTokenizerV2().hash
    assert path.stat().st_size <= 25 * 1024 * 1024


def test_steering_by_chords_works_out_of_the_box(tmp_path):
    r = CliRunner().invoke(
        app,
        ["arrange", "--chords", "Am F C G", "-o", str(tmp_path), "--candidates", "1"],
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "accompaniment_1.json").read_text())
    assert meta["model"] == default_model(parts=True).name
    assert [c[1] for c in meta["chords"]] == ["Am", "F", "C", "G"]
    r = CliRunner().invoke(
        app,
        ["complete", str(EXAMPLE), "-o", str(tmp_path / "c"), "--bars", "2",
         "--candidates", "1", "--chords", "C G/B"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "c" / "candidate_1.json").read_text())
    assert meta["model"] == default_model(parts=True).name
    assert [c[1] for c in meta["chords"]] == ["C", "G/B"]
