"""Styles: `pianomuse tune` on real pieces (Bach chorales, tests/data/style), the style used
with --style, and refused where it does not belong."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import POP909
from pianomuse.cli import app
from pianomuse.copilot import Copilot, Sampling
from pianomuse.data.prepare import read_song
from pianomuse.model import load_model
from pianomuse.style import Style, tune
from pianomuse.tokenizer import Tokenizer

STYLE = Path(__file__).parent / "data" / "style"


@pytest.fixture(scope="module")
def pieces(trained_model) -> list[np.ndarray]:
    tok = Tokenizer.from_config(load_model(trained_model).meta.tokenizer_config)
    return [tok.encode(read_song(p)) for p in sorted(STYLE.glob("*.mid"))[:8]]


@pytest.mark.parametrize("method", ["head", "state", "lora"])
def test_tuning_lowers_the_held_out_bits(trained_model, pieces, method):
    model = load_model(trained_model)
    tok = Tokenizer.from_config(model.meta.tokenizer_config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    style = tune(model, tok, pieces[:6], pieces[6:], method=method, minutes=0.15)
    m = style.meta
    assert m["bits_per_note_after"] < m["bits_per_note_before"] and m["steps"] >= 5
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    size = sum(t.numel() * t.element_size() for t in style.tensors.values())
    assert size <= 1024 * 1024


def test_tune_then_use_then_refuse(trained_model, tmp_path):
    """The command writes a style and its curve; complete writes differently with it (the
    same seed) and records it; the bundled model refuses it, in one line."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for p in sorted(STYLE.glob("*.mid"))[:6]:
        shutil.copy(p, folder)
    (folder / "notes.mid").write_text("not a MIDI file")
    out = tmp_path / "bach.safetensors"
    args = ["tune", str(folder), "-o", str(out), "--model", str(trained_model)]
    r = CliRunner().invoke(app, [*args, "--minutes", "0.1"])
    assert r.exit_code == 0, r.output
    assert "bits per note" in r.output and "skipped notes.mid" in r.output
    assert out.stat().st_size <= 1024 * 1024 and out.with_suffix(".png").stat().st_size > 1000
    song = POP909 / "002" / "002.mid"
    plain = Copilot(trained_model).complete(song, bars=2, candidates=1, sampling=Sampling(seed=3))
    styled = Copilot(trained_model, style=Style.load(out))
    got = styled.complete(song, bars=2, candidates=1, sampling=Sampling(seed=3))
    assert not np.array_equal(got.candidates[0].tokens, plain.candidates[0].tokens)
    assert got.sidecar(got.candidates[0])["style"] == "bach.safetensors"
    r = CliRunner().invoke(
        app, ["complete", str(song), "--style", str(out), "-o", str(tmp_path / "c")]
    )
    assert r.exit_code == 1 and "this style was tuned for" in r.output  # the bundled model
    assert not (tmp_path / "c").exists()


def test_a_state_style_is_the_start_of_every_prompt(trained_model, pieces):
    """A state style changes where a prompt starts, not the weights: the copilot's prefill
    and a live session's first bar both read from it."""
    model = load_model(trained_model)
    tok = Tokenizer.from_config(model.meta.tokenizer_config)
    style = tune(model, tok, pieces[:6], pieces[6:], method="state", minutes=0.05)
    cp = Copilot(trained_model, style=style)
    assert cp.engine.runtime == "torch" and cp.engine.start is not None
    start = style.start(1)
    idx = torch.as_tensor(pieces[0][:64])[None]
    with torch.inference_mode():
        want, _ = model.prefill(idx, start, last_only=True)
        zero, _ = model.prefill(idx, last_only=True)
    got, _ = cp.engine.read(pieces[0][:64], None)  # a live bar, from the start
    kept, _ = cp.engine.context(pieces[0][:64])  # a context
    assert not torch.allclose(want, zero, atol=1e-3)
    for logits in (got, kept):  # the int8 copy's prefills, from the style
        assert torch.allclose(torch.from_numpy(logits), want, atol=0.05)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: None, "0 readable pieces"),
        (lambda d: shutil.copy(sorted(STYLE.glob("*.mid"))[0], d), "1 readable pieces"),
        (lambda d: (d / "x.mid").write_text("junk"), "0 readable pieces"),
    ],
)
def test_a_folder_that_cannot_teach_is_one_line(trained_model, tmp_path, make, words):
    folder = tmp_path / "few"
    folder.mkdir()
    make(folder)
    out = tmp_path / "s.safetensors"
    args = ["tune", str(folder), "-o", str(out), "--model", str(trained_model), "--minutes", "0.1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and words in r.output and "Traceback" not in r.output
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_the_web_api_keeps_an_uploaded_style_and_writes_in_it(trained_model, style_file, tmp_path):
    """POST /api/style, then a continuation that names it writes what `--style` writes with
    the same seed, and its sidecar says so; a style of another model, a file that is no style
    and an id the server does not keep are each one line naming the field."""
    from fastapi.testclient import TestClient

    from pianomuse.serve import web_app
    from serve_helpers import midi_b64

    client = TestClient(web_app(Copilot(trained_model)), base_url="http://localhost")
    song = POP909 / "002" / "002.mid"
    body = {"midi": midi_b64(song), "bars": 2, "candidates": 1, "seed": 3}
    # A served model has written before a style comes: it holds graphs and locks by then.
    plain = client.post("/api/complete", json=body).json()["candidates"][0]["sidecar"]
    data = midi_b64(style_file)
    r = client.post("/api/style", json={"data": data, "name": "../chorales.safetensors"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["name"] == "chorales.safetensors" and out["method"] == "head"
    assert out["pieces"] == 6 and out["bits_after"] < out["bits_before"]
    r = client.post("/api/complete", json={**body, "style": out["id"]})
    assert r.status_code == 200, r.text
    web = r.json()["candidates"][0]
    assert web["sidecar"]["style"] == "chorales.safetensors"
    styled = Copilot(trained_model, style=Style.load(style_file))
    want = styled.complete(song, bars=2, candidates=1, sampling=Sampling(seed=3)).candidates[0]
    assert web["sidecar"]["tokens"] == len(want.tokens)
    assert web["sidecar"]["notes"] == int(want.new.note_num())
    assert web["sidecar"]["mean_loglik"] == pytest.approx(want.loglik, abs=1e-6)
    assert "style" not in plain and plain["mean_loglik"] != web["sidecar"]["mean_loglik"]
    other = Style.load(style_file)
    other.meta["model_sha256"] = "0" * 64
    other.save(tmp_path / "other.safetensors")
    for sent, words in (
        (midi_b64(tmp_path / "other.safetensors"), "style: this style was tuned for"),
        (midi_b64(song), "style: not a Piano Muse style"),
    ):
        r = client.post("/api/style", json={"data": sent, "name": "x.safetensors"})
        assert r.status_code == 400 and r.json()["detail"].startswith(words), r.text
    r = client.post("/api/complete", json={**body, "style": "0123456789abcdef"})
    assert r.status_code == 400 and r.json()["detail"].startswith("style: is not on this server")


def test_a_lora_style_applied_is_what_it_learnt_through(trained_model, pieces):
    """`Style.apply` adds B A into the weights once; the parametrised copy tuning trains
    through adds it at every call: the two give the same logits."""
    from pianomuse.style import _with_low_rank

    model = load_model(trained_model)
    tok = Tokenizer.from_config(model.meta.tokenizer_config)
    style = tune(model, tok, pieces[:6], pieces[6:], method="lora", minutes=0.05)
    assert any(t.abs().max() > 0 for k, t in style.tensors.items() if k.endswith("lora_b"))
    idx = torch.as_tensor(pieces[0][:128])[None]
    with torch.no_grad():
        merged, _ = style.apply(model).prefill(idx)
        learnt, _ = _with_low_rank(model, style.tensors).prefill(idx)
        plain, _ = model.prefill(idx)
    assert torch.allclose(merged, learnt, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-3)
