"""`prepare`: shards, manifest, deterministic split, bad files reported and skipped."""

from __future__ import annotations

import json
import shutil

import numpy as np
from symusic import Note, Score, Track
from typer.testing import CliRunner

from conftest import POP909, SONGS
from pianomuse.cli import app
from pianomuse.data.prepare import prepare, split_of
from pianomuse.data.shards import TokenShards
from pianomuse.tokenizer import Tokenizer


def test_shards_hold_every_song(prepared):
    tok = Tokenizer.latest()
    m = json.loads((prepared / "manifest.json").read_text())
    assert len(m["files"]) == len(SONGS) and not m["skipped"]
    assert m["tokenizer_hash"] == Tokenizer.latest().hash  # what new data is made with
    total = 0
    for split in ("train", "val"):
        shards = TokenShards(prepared, split)
        assert len(shards) == m["splits"][split]["songs"] >= 1
        total += shards.num_tokens
        rows = [f for f in m["files"] if f["split"] == split]
        for i, row in enumerate(rows):
            song = shards.song(i)
            assert len(song) == row["tokens"]
            assert tok.vocab[song[0]] == "Bar_None"
    assert total == sum(f["tokens"] for f in m["files"])
    # The shards hold exactly what the tokenizer makes of the aligned song.
    from conftest import aligned_song

    first = next(f for f in m["files"] if f["split"] == "train")
    name = first["path"].split("/")[0]
    assert np.array_equal(TokenShards(prepared, "train").song(0), tok.encode(aligned_song(name)))


def test_second_run_changes_nothing_and_workers_agree(prepared, tmp_path):
    before = {p.name: p.read_bytes() for p in prepared.iterdir()}
    prepare(POP909, prepared, val_fraction=0.2)
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == before
    other = tmp_path / "two_workers"
    prepare(POP909, other, val_fraction=0.2, workers=2)
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before


def test_split_is_by_content():
    assert split_of("00000000" + "f" * 56, 0.1) == "val"
    assert split_of("ffffffff" + "0" * 56, 0.1) == "train"


def test_bad_files_are_skipped_with_reasons(tmp_path):
    root = tmp_path / "collection"
    shutil.copytree(POP909 / "001", root / "001")
    (root / "text.mid").write_text("not midi at all")
    (root / "empty.mid").write_bytes(b"")
    (root / "truncated.mid").write_bytes((POP909 / "002" / "002.mid").read_bytes()[:300])
    drums = Score(480)
    t = Track(is_drum=True)
    t.notes.append(Note(0, 120, 36, 100))
    drums.tracks.append(t)
    (root / "drums.mid").write_bytes(drums.dumps_midi())
    shutil.copy(POP909 / "001" / "001.mid", root / "copy_of_001.mid")
    m = prepare(root, tmp_path / "out")
    reasons = {s["path"]: s["reason"] for s in m["skipped"]}
    assert [f["path"] for f in m["files"]] == ["001/001.mid"]
    assert m["files"][0]["aligned"] is True
    assert "not a MIDI file" in reasons["text.mid"]
    assert "empty" in reasons["empty.mid"]
    assert "corrupted" in reasons["truncated.mid"]
    assert "drum" in reasons["drums.mid"]
    assert "duplicate" in reasons["copy_of_001.mid"]


def test_prepare_command_and_its_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "p"
    r = runner.invoke(app, ["prepare", "--data-path", str(POP909), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"{len(SONGS)} songs" in r.output
    assert Tokenizer.load(out).hash == Tokenizer.latest().hash
    r = runner.invoke(app, ["prepare", "--data-path", str(tmp_path / "nowhere"), "--out", str(out)])
    assert r.exit_code == 1 and "no such file" in r.output and "Traceback" not in r.output
    (tmp_path / "empty_dir").mkdir()
    r = runner.invoke(
        app, ["prepare", "--data-path", str(tmp_path / "empty_dir"), "--out", str(out)]
    )
    assert r.exit_code == 1 and "no .mid" in r.output
