"""Shared fixtures: real POP909 songs bundled in tests/data, a tokenizer, a prepared folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pianomuse.data.prepare import prepare
from pianomuse.harmony import read_chord_file
from pianomuse.tokenizer import PianoTokenizer, align_to_beats, load_score, read_beats

DATA = Path(__file__).parent / "data"
POP909 = DATA / "pop909"
SONGS = sorted(p.name for p in POP909.iterdir() if p.is_dir())


@pytest.fixture(scope="session")
def tok() -> PianoTokenizer:
    return PianoTokenizer()


def aligned_song(name: str):
    """A bundled POP909 song re-timed onto its annotated beats, with its annotated chords."""
    return align_to_beats(
        load_score(POP909 / name / f"{name}.mid"),
        read_beats(POP909 / name / "beat_midi.txt"),
        chords=read_chord_file(POP909 / name / "chord_midi.txt"),
    )


@pytest.fixture(scope="session")
def song_ids(tok) -> np.ndarray:
    """Token ids of song 001, aligned."""
    return tok.encode(aligned_song("001"))


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare(POP909, out, val_fraction=0.2)
    return out


@pytest.fixture(scope="session")
def trained_model(prepared, tmp_path_factory) -> Path:
    """A tiny model trained for a few steps by the project's own training loop, half of its
    samples in the fill-in-the-middle layout."""
    from pianomuse.train.config import make_config
    from pianomuse.train.loop import train

    out = tmp_path_factory.mktemp("run")
    cfg = make_config(
        {
            "data_path": str(prepared),
            "output_dir": str(out),
            "preset": "tiny",
            "max_seq_len": 256,
            "max_steps": 40,
            "fim_rate": 0.5,
            "eval_every": 40,
            "save_every": 40,
            "device": "cpu",
        }
    )
    train(cfg)
    return out / "best.safetensors"


def header_kinds(st, ids) -> list:
    """Kinds of a stream's first four header tokens, past the Part that may open a bar's
    first block (tokenizer v2)."""
    k = [x for x in st.kinds(ids[:5]).tolist() if x != 11]  # 11: Kind.PART
    return k[:4]


@pytest.fixture(scope="module")
def server(trained_model):
    """A real `pianomuse serve` of the trained test model, one per test module that asks
    (test_serve_browser.py serves the bundled model instead, with its own fixture)."""
    from test_serve_browser import serve

    yield from serve("--model", str(trained_model))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with its own downloads folder, one per test module that asks."""
    from test_serve_browser import chromium

    yield from chromium(tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="session")
def style_file(trained_model, tmp_path_factory) -> Path:
    """A head style of the test model tuned on six Bach chorales (tests/data/style) for three
    seconds, saved as `pianomuse tune` saves one."""
    from pianomuse.data.prepare import read_song
    from pianomuse.model import load_model
    from pianomuse.modelfiles import file_sha
    from pianomuse.style import tune
    from pianomuse.tokenizer import Tokenizer

    model = load_model(trained_model)
    tok = Tokenizer.from_config(model.meta.tokenizer_config)
    chorales = sorted((Path(__file__).parent / "data" / "style").glob("*.mid"))[:8]
    pieces = [tok.encode(read_song(p)) for p in chorales]
    style = tune(model, tok, pieces[:6], pieces[6:], method="head", minutes=0.05)
    style.meta |= {"model": trained_model.name, "model_sha256": file_sha(trained_model)}
    path = tmp_path_factory.mktemp("styles") / "chorales.safetensors"
    style.save(path)
    return path
