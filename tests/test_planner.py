"""The chord planner: a song's harmony read off its tokens, experts that copy and match bars,
a selector fitted on real songs, and plans the copilot writes to exactly."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import POP909, aligned_song
from pianomuse.cli import app
from pianomuse.copilot import Copilot, Sampling
from pianomuse.harmony import parse_progression
from pianomuse.planner import (
    Harmony,
    Selector,
    bars_text,
    chord_code,
    fit_selector,
    harmony_of,
    plan_chords,
    propose,
    same_chord,
)
from pianomuse.steering import Steering
from pianomuse.tokenizer import Kind, PianoTokenizerV2


@pytest.fixture(scope="module")
def tok() -> PianoTokenizerV2:
    return PianoTokenizerV2()


@pytest.fixture(scope="module")
def songs(tok) -> list[Harmony]:
    return [harmony_of(tok, tok.encode(aligned_song(f"00{i}"))) for i in range(1, 7)]


def _periodic(bars: int, period: list[str]) -> Harmony:
    """A 4/4 song whose chords repeat `period` (a chord a bar)."""
    codes = [chord_code(bar[0][1]) for s in period for bar in parse_progression(s, 4)]
    per_beat = np.repeat([codes[b % len(codes)] for b in range(bars)], 4)
    return Harmony(per_beat.astype(np.int64), np.arange(0, 4 * bars + 1, 4))


def test_a_songs_harmony_is_what_its_tokens_state(tok, songs):
    """Every chord change of song 001's tokens is a change of the beat grid, at its beat,
    and the grid reads back through `--chords` syntax unchanged."""
    ids = tok.encode(aligned_song("001"))
    h = songs[0]
    st = tok.structure
    assert h.bars == len(st.bar_starts(ids)) and len(h.codes) == h.bar_starts[-1]
    changes = int((np.diff(h.codes) != 0).sum()) + int(h.codes[0] != 0)
    stated = int((st.kinds(ids) == Kind.CHORD).sum())
    assert changes <= stated and changes > 0.6 * stated  # a few restated or inside a beat
    beats = np.diff(h.bar_starts[8:17]).tolist()
    text = bars_text(h.codes[h.bar_starts[8] : h.bar_starts[16]], beats)
    back = []
    for bar, n in zip(text.split(" | "), beats, strict=True):
        (changes,) = parse_progression(bar, n)
        starts = [int(b) for b, _ in changes] + [n]
        for (_, c), a, b in zip(changes, starts, starts[1:], strict=False):
            back += [chord_code(c)] * (b - a)
    assert back == h.codes[h.bar_starts[8] : h.bar_starts[16]].tolist()


def test_copy_and_match_continue_a_song_that_repeats():
    h = _periodic(24, ["C", "G", "Am", "F", "Dm", "G", "C", "C"])
    want = _periodic(28, ["C", "G", "Am", "F", "Dm", "G", "C", "C"]).codes[96:]
    for expert in ("copy 8", "copy 16", "match 4", "match 8"):
        assert same_chord(propose(h, expert, 16), want).all(), expert
    assert not same_chord(propose(h, "copy 4", 16), want).all()
    assert propose(h.upto(6), "copy 8", 16) is None  # not that long yet


def test_the_fitted_planner_plans_distinct_progressions(songs):
    """Fitted on real songs, the planner's first plan of a song that repeats every 8 bars
    is right, and its plans are distinct progressions in `--chords` syntax."""
    selector = fit_selector(songs, steps=300)
    assert np.isfinite(selector.weights).all() and np.abs(selector.weights).sum() > 0
    h = _periodic(24, ["C", "G", "Am", "F", "Dm", "G", "C", "C"])
    plans = plan_chords(h, [4] * 4, 3, selector)
    assert plans[0].progression() == "C:4 | G:4 | Am:4 | F:4"
    texts = [p.progression() for p in plans]
    assert len(set(texts)) == len(texts) >= 2
    for text in texts:
        assert len(parse_progression(text, 4)) == 4


def test_the_planner_file_round_trips(tmp_path, songs):
    selector = fit_selector(songs[:3], steps=50)
    selector.save(tmp_path / "p.json")
    again = Selector.load(tmp_path / "p.json")
    assert np.array_equal(again.weights, selector.weights)
    assert np.array_equal(again.bias, selector.bias)


def test_plan_then_write_follows_each_candidates_plan(trained_model, songs):
    """Without chords, each candidate is written to a plan of its own, the chords exactly;
    with `plan="off"` nothing is planned; given chords win over the plan."""
    copilot = Copilot(trained_model, planner=fit_selector(songs, steps=300))
    song = aligned_song("002")
    r = copilot.complete(song, bars=4, candidates=3, sampling=Sampling(seed=1))
    plans = r.context["plans"]
    assert len(plans) == 3 and len(set(plans)) >= 2
    for c in r.candidates:
        side = r.sidecar(c)
        assert side["plan"] == plans[c.index]
        written = [parse_progression(f"{s}:1", 4)[0][0][1].label() for _, s in side["chords"]]
        planned = [ch.label() for bar in parse_progression(side["plan"], 2) for _, ch in bar]
        assert _runs(written) == _runs(planned)
    free = copilot.complete(song, bars=4, candidates=2, steering=Steering(plan="off"))
    assert "plans" not in free.context and free.sidecar(free.candidates[0])["plan"] is None
    given = copilot.complete(song, bars=2, candidates=2, steering=Steering(chords="C"))
    assert "plans" not in given.context


def _runs(labels: list[str]) -> list[str]:
    """The labels with repeats in a row dropped (a chord restated at a bar line)."""
    return [x for i, x in enumerate(labels) if i == 0 or x != labels[i - 1]]


def test_the_chords_command_reads_annotations_or_hears_them(tmp_path):
    """On a POP909 song (annotations beside it) and on a plain file (recognised): the song's
    chords bar by bar, then suggestions that `complete --chords` takes."""
    runner = CliRunner()
    r = runner.invoke(app, ["chords", str(POP909 / "003" / "003.mid"), "--next", "4"])
    assert r.exit_code == 0, r.output
    assert "chords annotated" in r.output and "the next 4 bars:" in r.output
    suggestions = [line.split(") ", 1)[1] for line in r.output.splitlines() if ". (" in line]
    assert len(suggestions) == 3
    for text in suggestions:
        assert len(parse_progression(text, 4)) == 4
    plain = tmp_path / "plain.mid"
    plain.write_bytes((POP909 / "003" / "003.mid").read_bytes())
    r = runner.invoke(app, ["chords", str(plain), "--candidates", "2"])
    assert r.exit_code == 0 and "chords recognised" in r.output, r.output
    assert sum(". (" in line for line in r.output.splitlines()) == 2
    r = runner.invoke(app, ["chords", str(plain), "--next", "0"])
    assert r.exit_code == 1 and "--next must be between 1 and 64" in r.output
