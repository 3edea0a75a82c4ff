"""`pianomuse complete` and `Copilot.complete`: valid, exact, reproducible, and robust."""

from __future__ import annotations

import json

import numpy as np
import pytest
from symusic import Note, Score, Track
from typer.testing import CliRunner

from conftest import POP909
from pianomuse.cli import app
from pianomuse.copilot import Copilot, Sampling
from pianomuse.model import load_model
from pianomuse.tokenizer import Kind, load_score, merge_to_piano, notes_in_beats


@pytest.fixture(scope="module")
def copilot(trained_model):
    return Copilot(trained_model)


def test_grammar_makes_every_continuation_valid(copilot):
    tok = copilot.tok
    on, off = [], []
    for song in ("001", "002", "003", "004", "005"):
        midi = POP909 / song / f"{song}.mid"
        for grammar, rates in ((True, on), (False, off)):
            r = copilot.complete(
                midi,
                bars=2,
                candidates=20,
                sampling=Sampling(seed=7),
                context_bars=4,
                grammar=grammar,
            )
            for c in r.candidates:
                # Each continuation starts on its own Bar, so it is judged on its own.
                rates.append(tok.tokens_errors(c.tokens))
    assert len(on) == 100
    assert max(on) == 0.0
    assert np.mean(off) > 0.0  # without the mask this under-trained model breaks the grammar


@pytest.mark.parametrize("bars", [1, 3])
def test_stops_exactly_after_n_bars(copilot, bars):
    r = copilot.complete(
        POP909 / "002" / "002.mid",
        bars=bars,
        candidates=4,
        sampling=Sampling(seed=3),
        context_bars=4,
    )
    assert sum(c.new.note_num() for c in r.candidates) > 0
    for c in r.candidates:
        k = copilot.tok.structure.kinds(c.tokens)
        assert k[0] == Kind.BAR and np.sum(k == Kind.BAR) == bars
        bar_len = (
            c.new.tpq
            * 4
            * c.new.time_signatures[0].numerator
            // c.new.time_signatures[0].denominator
        )
        onsets = notes_in_beats(c.new)["onset"] * c.new.tpq
        assert len(onsets) == 0 or onsets.max() < bars * bar_len


def test_progress_rises_to_one(copilot):
    seen: list[float] = []
    r = copilot.complete(POP909 / "002" / "002.mid", bars=3, candidates=3, progress=seen.append)
    assert len(seen) == r.stats.decode_steps + 1  # after every sampled token
    assert np.all(np.diff(seen) >= 0) and seen[0] == 0.0 and seen[-1] == 1.0
    # Completed bars move it: a bar of one of 3 candidates, of 3 bars, is a step of 1/9 (two
    # candidates may close a bar on the same step).
    ninths = {round(9 * x, 6) for x in seen}
    assert all(n == int(n) for n in ninths) and len(ninths) >= 5 and {0.0, 9.0} <= ninths


def test_candidates_are_ranked_and_keep_the_context(copilot):
    midi = POP909 / "001" / "001.mid"
    r = copilot.complete(midi, bars=2, candidates=5, sampling=Sampling(seed=1))
    lls = [c.loglik for c in r.candidates]
    assert lls == sorted(lls, reverse=True) and [c.rank for c in r.candidates] == [1, 2, 3, 4, 5]
    piece = merge_to_piano(load_score(midi))
    orig = notes_in_beats(piece)
    for c in r.candidates:
        full = notes_in_beats(c.full)
        before = full["onset"] < r.span.start_tick / piece.tpq
        assert np.array_equal(full["pitch"][before], orig["pitch"])
        assert np.allclose(full["onset"][before], orig["onset"])
        new = notes_in_beats(c.new)
        assert np.allclose(
            np.sort(full["onset"][~before]), np.sort(new["onset"] + r.span.start_tick / piece.tpq)
        )
        assert c.full.tempos[-1].qpm == pytest.approx(piece.tempos[-1].qpm)
        # The file's three POP909 tracks come back as they were; the new bars are tracks of
        # their own (one per part the model wrote).
        names = [t.name for t in c.full.tracks]
        assert names[:3] == ["MELODY", "BRIDGE", "PIANO"] and len(names) > 3
        assert all(n.startswith("Piano Muse") for n in names[3:])
    # The seam is the bar line after the context's last bar.
    assert r.span.start_tick >= max(orig["onset"]) * piece.tpq


def test_prefill_is_one_parallel_call(copilot, monkeypatch):
    """The context is read by one parallel prefill; then one step per token of all the
    candidates at once."""
    from pianomuse.model.quant import inference_model

    engine = copilot.engine
    model = inference_model(copilot.model, copilot.precision)  # the int8 copy
    assert model is not copilot.model and engine.runtime == "torch"
    calls = {"prefill": [], "step": []}
    real_prefill, real_step = model.prefill, engine.step

    def prefill(idx, state=None, **how):
        calls["prefill"].append(tuple(idx.shape))
        return real_prefill(idx, state, **how)

    def step(tok, state):
        calls["step"].append(len(tok))
        return real_step(tok, state)

    engine.kept().clear()
    monkeypatch.setattr(engine, "step", step)
    model.prefill = prefill
    try:
        r = copilot.complete(POP909 / "003" / "003.mid", bars=1, candidates=3, context_bars=6)
    finally:
        del model.prefill
    assert calls["prefill"] == [(1, r.context["tokens"])]
    assert r.context["tokens"] > 50
    assert calls["step"] == [3] * max(len(c.tokens) for c in r.candidates)


def test_same_seed_same_bytes(trained_model, tmp_path):
    args = [
        "complete",
        str(POP909 / "004" / "004.mid"),
        "--model",
        str(trained_model),
        "--bars",
        "2",
        "--candidates",
        "3",
    ]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "5"), (b, "5"), (c, "6")):
        r = CliRunner().invoke(app, [*args, "-o", str(out), "--seed", seed])
        assert r.exit_code == 0, r.output
    files = sorted(p.name for p in a.iterdir())
    assert len(files) == 12
    for name in files:
        if name.endswith(".mid"):
            assert (a / name).read_bytes() == (b / name).read_bytes()
    assert any((a / n).read_bytes() != (c / n).read_bytes() for n in files if n.endswith(".mid"))


def test_outputs_and_sidecar(trained_model, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        [
            "complete",
            "--context_midi",
            str(POP909 / "005" / "005.mid"),
            "--model_path",
            str(trained_model),
            "--output_dir",
            str(out),
            "--max_new_tokens",
            "40",
            "--top_k",
            "20",
            "--top_p",
            "0.9",
            "--temperature",
            "0.8",
            "--candidates",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "real time" in r.output
    meta = json.loads((out / "candidate_1.json").read_text())
    assert meta["sampling"] == {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "seed": 0}
    assert meta["tokenizer_hash"] and meta["model_sha256"] and meta["context"]["tokens"] > 0
    assert meta["rank"] == 1 and meta["tokens"] <= 40
    assert (out / "candidate_2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_score(out / "candidate_1_continuation.mid").note_num() == meta["notes"]
    assert json.loads((out / "candidate_2.json").read_text())["mean_loglik"] <= meta["mean_loglik"]


def test_api_takes_a_score(copilot):
    s = Score(480)
    t = Track(program=0)
    for i in range(16):
        t.notes.append(Note(i * 480, 400, 60 + (i % 5), 80))
    s.tracks.append(t)
    r = copilot.complete(s, bars=2, candidates=2, sampling=Sampling(seed=0))
    assert r.span.first_bar == 4 and len(r.candidates) == 2


def _bad_inputs(tmp_path):
    drums = Score(480)
    d = Track(is_drum=True)
    d.notes.append(Note(0, 100, 36, 100))
    drums.tracks.append(d)
    silent = Score(480)
    silent.tracks.append(Track(program=0))
    cases = {
        "text.mid": (b"this is not midi", "not a MIDI file"),
        "empty.mid": (b"", "empty"),
        "broken.mid": ((POP909 / "001" / "001.mid").read_bytes()[:200], "corrupted"),
        "drums.mid": (drums.dumps_midi(), "only drum"),
        "silent.mid": (silent.dumps_midi(), "no notes"),
        "huge.mid": (b"MThd" + bytes(17 * 1024 * 1024), "too large"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    return {name: msg for name, (_, msg) in cases.items()}


def test_bad_input_is_one_line_and_leaves_nothing(trained_model, tmp_path):
    runner = CliRunner()
    cases = _bad_inputs(tmp_path)
    cases["missing.mid"] = "no such file"
    (tmp_path / "folder.mid").mkdir()
    cases["folder.mid"] = "directory"
    for name, msg in cases.items():
        out = tmp_path / f"out_{name}"
        r = runner.invoke(
            app, ["complete", str(tmp_path / name), "--model", str(trained_model), "-o", str(out)]
        )
        assert r.exit_code == 1, name
        assert msg in r.output, (name, r.output)
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
        assert not out.exists() or not any(out.iterdir())
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    r = runner.invoke(
        app,
        [
            "complete",
            str(POP909 / "001" / "001.mid"),
            "--model",
            str(trained_model),
            "-o",
            str(blocker / "sub"),
            "--bars",
            "1",
        ],
    )
    assert r.exit_code == 1 and "cannot write" in r.output
    r = runner.invoke(
        app, ["complete", str(POP909 / "001" / "001.mid"), "--model", str(tmp_path / "text.mid")]
    )
    assert r.exit_code == 1 and "checkpoint" in r.output
    r = runner.invoke(
        app,
        ["complete", str(POP909 / "001" / "001.mid"), "--model", str(trained_model), "--bars", "0"],
    )
    assert r.exit_code == 1 and "--bars" in r.output
    r = runner.invoke(
        app,
        ["complete", str(POP909 / "001" / "001.mid"), "--model", str(trained_model),
         "--precision", "int4"],
    )  # fmt: skip
    assert r.exit_code == 1 and "--precision" in r.output and "int8" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_no_default_model_message(tmp_path, monkeypatch):
    import pianomuse.cli.common

    # An install without the bundled models.
    monkeypatch.setattr(pianomuse.cli.common, "default_model", lambda parts=False: None)
    r = CliRunner().invoke(
        app, ["complete", str(POP909 / "001" / "001.mid"), "-o", str(tmp_path / "o")]
    )
    assert r.exit_code == 1 and "--model" in r.output and "Traceback" not in r.output


def test_a_loaded_model_carries_its_tokenizer_and_its_window(trained_model):
    model = load_model(trained_model)
    summary = model.meta.training
    assert summary.max_seq_len == 256 and summary.steps == 40 and summary.tokens_seen > 0
    assert summary.tokenizer_hash == model.meta.tokenizer_hash and summary.data_fingerprint
    by_object, by_path = Copilot(model), Copilot(trained_model)
    # The context budget is the training window the file records, not a fixed 1024.
    assert by_object.max_context_tokens == by_path.max_context_tokens == 256
    song = POP909 / "003" / "003.mid"
    a = by_object.complete(song, bars=1, candidates=2, sampling=Sampling(seed=9))
    b = by_path.complete(song, bars=1, candidates=2, sampling=Sampling(seed=9))
    assert [c.tokens.tolist() for c in a.candidates] == [c.tokens.tolist() for c in b.candidates]
    assert 200 < a.context["tokens"] <= 256


def test_a_sidecar_alone_makes_its_file_again(trained_model, tmp_path):
    """Every setting that shapes the music is in the sidecar: the same call made from the
    sidecar's fields alone (the model and the piece it names) gives the same bytes, at both
    precisions (int8 and fp32 draw differently)."""
    from pianomuse.copilot import write
    from pianomuse.steering import Steering

    song = POP909 / "002" / "002.mid"
    for precision in ("int8", "fp32"):
        first = Copilot(trained_model, precision=precision).complete(
            song,
            bars=2,
            candidates=2,
            sampling=Sampling(seed=11, temperature=1.1, top_k=40),
            steering=Steering(key="B major", max_polyphony=3),
            context_bars=8,
        )
        files = write(first, tmp_path / precision)
        side = json.loads(files[1][-1].read_text())  # rank 2's sidecar
        assert side["precision"] == precision
        again = Copilot(trained_model, precision=side["precision"]).complete(
            song,
            bars=side["bars"],
            candidates=side["candidates"],
            sampling=Sampling(**side["sampling"]),
            steering=Steering.from_fields(side["steering"]),
            context_bars=side["context"]["context_bars"],
        )
        assert side["source_sha256"] == again.sidecar(again.candidates[0])["source_sha256"]
        assert again.candidates[1].full_midi == files[1][0].read_bytes()
