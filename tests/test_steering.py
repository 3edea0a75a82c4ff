"""Given chords and given parts are written exactly; the model writes the rest."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import POP909, aligned_song
from pianomuse.copilot import Copilot, Sampling
from pianomuse.errors import FieldError
from pianomuse.harmony import Chord, parse_label
from pianomuse.steering import Steering
from pianomuse.tokenizer import Kind, load_score, notes_in_beats
from pianomuse.tokenizer.align import CHORD_MARKER


@pytest.fixture(scope="module")
def copilot(trained_model):
    return Copilot(trained_model)


def _chords(score) -> list[tuple[float, Chord]]:
    return [
        (m.time / score.tpq, parse_label(m.text.removeprefix(CHORD_MARKER)))
        for m in score.markers
        if m.text.startswith(CHORD_MARKER)
    ]


def steered_4_bars(copilot, song, steering):
    """Four new bars after `song`, three candidates, for seeds 0-2 (hot sampling, so that
    only the rules keep them in line)."""
    for seed in range(3):
        yield copilot.complete(
            song,
            bars=4,
            candidates=3,
            steering=steering,
            sampling=Sampling(seed=seed, temperature=1.3),
        )


def test_given_chords_are_written_exactly(copilot):
    steering = Steering(chords="Am | F:2 G/B:2")
    song = aligned_song("001")  # 4/4
    for r in steered_4_bars(copilot, song, steering):
        want = [(0.0, "A:min"), (4.0, "F:maj"), (6.0, "G:maj/B")]
        want = want + [(t + 8.0, c) for t, c in want]  # repeated as needed
        for c in r.candidates:
            assert copilot.tok.tokens_errors(c.tokens) == 0.0
            assert [(t, ch.label()) for t, ch in _chords(c.new)] == want
            assert r.sidecar(c)["chords"][:2] == [[0.0, "Am"], [4.0, "F"]]
            assert r.sidecar(c)["steering"] == {"chords": "Am | F:2 G/B:2"}


def test_an_accompaniment_is_written_to_the_given_melody(copilot):
    song = aligned_song("002")
    piece = copilot.read(song)
    st = copilot.tok.structure
    r = copilot.infill(piece, 9, 12, write="accompaniment", candidates=2, sampling=Sampling(seed=1))
    start, end = r.span.start_tick / piece.tpq, r.span.end_tick / piece.tpq
    edges = np.append(st.bar_starts(piece.ids), len(piece.ids))
    for c in r.candidates:
        assert copilot.tok.tokens_errors(c.tokens) == 0.0
        # Every written bar opens with the song's own melody block, token for token.
        new_edges = np.append(st.bar_starts(c.tokens), len(c.tokens))
        for k in range(4):
            _, mine = st.blocks(c.tokens[new_edges[k] : new_edges[k + 1]])
            _, theirs = st.blocks(piece.ids[edges[8 + k] : edges[9 + k]])
            melody = [b for b in theirs if st.value[b[0]] == 0]
            if melody:
                assert np.array_equal(mine[0], melody[0])
        # The file keeps its melody tracks; only the accompaniment of the gap is new.
        assert [t.name for t in c.new.tracks] == ["Accompaniment"]
        for orig, got in zip(song.tracks, c.full.tracks, strict=False):
            if orig.name in ("MELODY", "BRIDGE"):
                assert got.notes == orig.notes
        piano = next(t for t in c.full.tracks if t.name == "PIANO").notes.numpy()
        in_gap = (piano["time"] >= start * piece.tpq) & (piano["time"] < end * piece.tpq)
        assert not in_gap.any()
        assert notes_in_beats(c.new)["onset"].max() < end - start


def test_an_accompaniment_keeps_to_the_chords_and_density_asked(copilot):
    """Chords given while the melody is given: they go in the melody's block (or, where it
    rests, the accompaniment's), at their beats; the density counts the written part."""
    song = aligned_song("002")
    piece = copilot.read(song)
    st = copilot.tok.structure
    steering = Steering(chords="C G:2 Em:2 | Am F", density="busier")
    for seed in range(3):
        r = copilot.infill(
            piece,
            9,
            12,
            write="accompaniment",
            candidates=2,
            steering=steering,
            sampling=Sampling(seed=seed, temperature=1.3),
        )
        target = r.context["density"]["target"]
        for c in r.candidates:
            assert copilot.tok.tokens_errors(c.tokens) == 0.0
            got = [(t, ch.label()) for t, ch in _chords(c.new)]
            assert got == [(0.0, "C:maj"), (4.0, "G:maj"), (6.0, "E:min"), (8.0, "A:min"),
                           (12.0, "F:maj")]  # fmt: skip
            # Accompaniment notes per bar, within +-20 % of 1.5 x the context's.
            acc = c.new.tracks[0].notes.numpy()["time"] / c.new.tpq
            per_bar = np.histogram(acc, bins=c.new_beats)[0]
            assert np.all(np.abs(per_bar - target) <= 0.2 * target + 0.5), (per_bar, target)
            parts = st.value[c.tokens[st.kinds(c.tokens) == Kind.PART]]
            assert set(parts.tolist()) <= {0, 1}


def test_steering_refuses_what_it_cannot_do(copilot):
    plain = POP909 / "003" / "003.mid"
    with pytest.raises(FieldError, match="write"):
        copilot.infill(plain, 2, 3, write="drums")
    with pytest.raises(FieldError, match="chords no chords given"):
        Steering(chords="  |  ")
    assert Steering(chords="") == Steering()  # an empty field asks nothing
    from pianomuse.bundled import default_model

    v1 = Copilot(default_model())
    with pytest.raises(FieldError, match="version 2"):
        v1.complete(plain, bars=1, steering=Steering(chords="C"))
    assert (v1.tok.structure.kinds(v1.read(plain).ids) == Kind.PITCH).any()


def test_chord_symbols_and_progressions():
    from pianomuse.harmony import parse_progression, parse_symbol

    labels = {s: parse_symbol(s).label() for s in ("C", "Am", "F#m7", "Bbmaj7", "C/E", "Bm7b5")}
    assert labels == {
        "C": "C:maj",
        "Am": "A:min",
        "F#m7": "F#:min7",
        "Bbmaj7": "A#:maj7",
        "C/E": "C:maj/E",
        "Bm7b5": "B:hdim7",
    }
    assert parse_symbol("Dsus4").quality == "sus4" and parse_symbol("N").root is None
    bars = parse_progression("C:2 G:2 | Am F:6", 4)
    assert [[(b, c.label()) for b, c in bar] for bar in bars] == [
        [(0.0, "C:maj"), (2.0, "G:maj")],
        [(0.0, "A:min")],
        [(0.0, "F:maj")],
        [(0.0, "F:maj")],  # a chord held across the bar line is stated again
    ]
    for bad, words in (
        ("H7", "'H7' is not a chord symbol"),
        ("C:x", "number of beats"),
        ("", "no chords"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_progression(bad, 4)


def test_a_density_below_the_melody_alone_is_kept(copilot):
    """3 notes a bar in a song whose melody alone has more: the melody's block takes them
    and no accompaniment block opens (one would need a note)."""
    song = aligned_song("002")
    for seed in range(3):
        r = copilot.complete(
            song,
            bars=3,
            candidates=3,
            sampling=Sampling(seed=seed, temperature=1.3),
            steering=Steering(density="3"),
        )
        for c in r.candidates:
            assert copilot.tok.tokens_errors(c.tokens) == 0.0
            per_bar = np.histogram(notes_in_beats(c.new)["onset"], bins=c.new_beats)[0]
            assert per_bar.tolist() == [3, 3, 3]


def test_a_key_a_register_and_a_density_are_kept(copilot):
    song = aligned_song("002")
    for seed in range(2):
        r = copilot.complete(
            song,
            bars=3,
            candidates=3,
            sampling=Sampling(seed=seed, temperature=1.2),
            steering=Steering(key="D dorian", range="C3-C6", density="12"),
        )
        for c in r.candidates:
            n = notes_in_beats(c.new)
            assert set((n["pitch"] % 12).tolist()) <= {2, 4, 5, 7, 9, 11, 0}
            assert n["pitch"].min() >= 48 and n["pitch"].max() <= 84
            per_bar = np.histogram(n["onset"], bins=c.new_beats)[0]
            assert np.all(np.abs(per_bar - 12) <= 0.2 * 12), per_bar
        assert r.context["density"]["target"] == 12.0
    # Passing notes: outside the scale only for at most half a beat.
    r = copilot.complete(
        song, bars=2, candidates=4, steering=Steering(key="C major", chromatic=True)
    )
    for c in r.candidates:
        n = notes_in_beats(c.new)
        outside = ~np.isin(n["pitch"] % 12, [0, 2, 4, 5, 7, 9, 11])
        assert np.all(n["duration"][outside] <= 0.5 + 1e-9)


def _bass_notes(score, spans):
    """Per span (from, to): the lowest accompaniment note struck in it (None: none)."""
    acc = next(t for t in score.tracks if t.name == "Accompaniment").notes.numpy()
    onset = acc["time"] / score.tpq
    out = []
    for a, b in spans:
        sel = (onset >= a - 1e-9) & (onset < b - 1e-9)
        out.append(int(acc["pitch"][sel].min()) if sel.any() else None)
    return out, acc["pitch"]


def test_the_bass_plays_each_chords_bass_inside_its_range(copilot):
    """Under given chords the accompaniment's lowest note of every chord is the chord's bass
    (slash chords included), inside the bass range; without chords, each bar's lowest note
    keeps to the range. Nothing else steers, so no rule has to give way."""
    song = aligned_song("002")
    steering = Steering(chords="C G/B:2 Am:2 | F Dm/A", bass_range="E2-E3")
    bass_pcs = [0, 11, 9, 5, 9]
    starts = [0.0, 4.0, 6.0, 8.0, 12.0, 16.0]
    for r in steered_4_bars(copilot, song, steering):
        for c in r.candidates:
            assert copilot.tok.tokens_errors(c.tokens) == 0.0
            spans = [(starts[k], starts[k + 1]) for k in range(5)]
            lowest, pitches = _bass_notes(c.new, spans)
            assert None not in lowest, lowest
            assert [p % 12 for p in lowest] == bass_pcs, lowest
            assert all(40 <= p <= 52 for p in lowest), lowest
            assert pitches.min() >= 40
    r = copilot.complete(song, bars=3, candidates=3, steering=Steering(bass_range="A1-A2"))
    for c in r.candidates:
        lowest, pitches = _bass_notes(c.new, [(0, 4), (4, 8), (8, 12)])
        assert all(p is not None and 33 <= p <= 45 for p in lowest), lowest
        assert pitches.min() >= 33


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(chords="C G H7"), "'H7' is not a chord symbol"),
        (dict(key="H major"), "'H' is not a key note"),
        (dict(key="C weird"), "the mode must be"),
        (dict(melody_range="C6-C5"), "is not a range of piano keys"),
        (dict(melody_range="C6"), "takes LOW-HIGH"),
        (dict(bass_range="C2-A2"), "narrower than an octave"),
        (
            dict(bass_range="C2-C3", accompaniment_range="G2-C5"),
            "less than an octave inside the accompaniment_range",
        ),
        (dict(key="C major", scale="C,D"), "give one of them"),
        (dict(max_polyphony=0), "between 1 and 88"),
        (dict(key="C major", range="C#4-C#4"), "range C#4-C#4 holds no note of the key"),
        (dict(scale="C", melody_range="D4-B4"), "melody_range D4-B4 holds no note of the scale"),
        (dict(density="200"), "at most 48 notes a bar"),
        (dict(chords="C:3.99 G:0.01"), "a chord lasts at least 0.25"),
        (dict(chords=" ".join(["C:0.01"] * 400)), "a chord lasts at least 0.25"),
        (dict(plan="sometimes"), "plan is auto or off"),
        (dict(texture="loose"), "texture is keep or free"),
        (dict(density="0"), "more than 0"),
        (dict(key="C major", chords="C Eb"), "outside the scale"),
    ],
)
def test_bad_steering_is_one_line(kwargs, words):
    with pytest.raises(FieldError, match=words):
        Steering(**kwargs)


def test_a_long_value_is_not_quoted_back_whole():
    with pytest.raises(FieldError) as e:
        Steering(key="C" * 10_000)
    assert len(str(e.value)) <= 300 and "\n" not in str(e.value)
    assert Steering(key="C major", chromatic=True, range="C#4-C#4").registers == {-1: (61, 61)}


def test_arrange_command_and_steering_options(trained_model, tmp_path):
    import json

    from symusic import Score, Track
    from typer.testing import CliRunner

    from pianomuse.cli import app

    # A melody alone (one track) gets an accompaniment under it, the melody kept.
    song = aligned_song("004")
    melody = Score(song.tpq)
    melody.tempos, melody.time_signatures = song.tempos, song.time_signatures
    melody.tracks.append(Track(name="Lead", program=0))
    melody.tracks[0].notes = song.tracks[0].notes.filter(lambda n: n.time < 480 * 32)
    path = tmp_path / "melody.mid"
    path.write_bytes(melody.dumps_midi())
    out = tmp_path / "arr"
    args = ["arrange", str(path), "--bars", "2-4", "--model", str(trained_model), "-o", str(out)]
    r = CliRunner().invoke(app, [*args, "--candidates", "2", "--key", "E major"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "arrangement_1.json").read_text())
    assert meta["kind"] == "arrange" and meta["context"]["write"] == "accompaniment"
    assert meta["steering"] == {"key": "E major"}
    from pianomuse.tokenizer import load_score

    full = load_score(out / "arrangement_1.mid")
    assert full.tracks[0].notes == load_score(path).tracks[0].notes  # the melody, untouched
    # Steering options on complete, and a bad one as one line.
    r = CliRunner().invoke(
        app,
        ["complete", str(POP909 / "003" / "003.mid"), "--model", str(trained_model), "-o",
         str(tmp_path / "c"), "--bars", "2", "--candidates", "1", "--chords", "Am F",
         "--melody-range", "C5-C6", "--density", "busier"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "c" / "candidate_1.json").read_text())
    assert [c[1] for c in meta["chords"]] == ["Am", "F"]
    assert meta["steering"]["density"] == "busier" and meta["context"]["density"]["target"] > 0
    r = CliRunner().invoke(
        app, ["complete", str(POP909 / "003" / "003.mid"), "--model", str(trained_model),
              "-o", str(tmp_path / "d"), "--chords", "C Hm"],
    )  # fmt: skip
    assert r.exit_code == 1 and "--chords 'Hm' is not a chord symbol" in r.output
    assert not (tmp_path / "d").exists()


def test_music_from_chords_alone(copilot, trained_model, tmp_path):
    import json

    from typer.testing import CliRunner

    from pianomuse.cli import app

    st = copilot.tok.structure
    steering = Steering(chords="Dm7 G7 | Cmaj7:2 A7:2", density="10")
    for write, part in (("accompaniment", 1), ("melody", 0)):
        r = copilot.sketch(
            bars=3, write=write, steering=steering, candidates=2, sampling=Sampling(seed=3)
        )
        for c in r.candidates:
            assert copilot.tok.tokens_errors(c.tokens) == 0.0
            parts = st.value[c.tokens[st.kinds(c.tokens) == Kind.PART]]
            assert len(parts) == 3 and set(parts.tolist()) == {part}  # that part alone
            want = ["D:min7", "G:7", "C:maj7", "A:7"]
            assert [ch.label() for _, ch in _chords(c.new)] == want
            assert [t for t, _ in _chords(c.new)] == [0.0, 4.0, 8.0, 10.0]
            assert c.full.time_signatures[0].numerator == 4 and len(c.full.tracks) == 1
            per_bar = np.histogram(notes_in_beats(c.new)["onset"], bins=c.new_beats)[0]
            assert np.all(np.abs(per_bar - 10) <= 2), per_bar
            assert r.sidecar(c)["kind"] == "sketch"
    with pytest.raises(FieldError, match="density"):
        copilot.sketch(bars=2, steering=Steering(chords="C", density="busier"))
    with pytest.raises(FieldError, match="chords"):
        copilot.sketch(bars=2, steering=Steering(key="C major"))
    # On the command line: arrange with --chords and no song.
    out = tmp_path / "sk"
    args = ["arrange", "--chords", "Am F C G", "--write", "melody", "--tempo", "90"]
    r = CliRunner().invoke(
        app, [*args, "--model", str(trained_model), "-o", str(out), "--candidates", "1"]
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "melody_1.json").read_text())
    assert meta["bars"] == 4 and meta["context"] == {"bars": 4, "write": "melody", "tempo": 90.0}
    assert [c[1] for c in meta["chords"]] == ["Am", "F", "C", "G"]
    r = CliRunner().invoke(app, ["arrange", "--model", str(trained_model), "-o", str(out / "x")])
    assert r.exit_code == 1 and "--chords" in r.output and not (out / "x").exists()


def most_keys_at_once(score) -> int:
    """The most notes of `score` sounding at one instant (a note ending where another starts
    is not sounding with it, whatever the float rounding of its end)."""
    n = notes_in_beats(score)
    on, off = n["onset"], n["onset"] + n["duration"]
    return max((int(((on <= t + 1e-6) & (off > t + 1e-6)).sum()) for t in on), default=0)


def test_max_polyphony_on_complete_infill_and_arrange(copilot, trained_model, tmp_path):
    """At most N keys at once in the new music, written by complete, infill (command line)
    and arrange (command line; the written accompaniment alone counts), where hot sampling
    alone goes past N."""
    import json

    from typer.testing import CliRunner

    from pianomuse.cli import app

    song = aligned_song("002")
    hot = Sampling(seed=2, temperature=1.3)
    free = copilot.complete(song, bars=3, candidates=4, sampling=hot)
    assert max(most_keys_at_once(c.new) for c in free.candidates) > 2
    r = copilot.complete(
        song, bars=3, candidates=4, sampling=hot, steering=Steering(max_polyphony=2)
    )
    assert all(most_keys_at_once(c.new) <= 2 for c in r.candidates)
    assert all(c.new.note_num() > 0 for c in r.candidates)
    assert r.sidecar(r.candidates[0])["steering"] == {"max_polyphony": 2}
    path = tmp_path / "002.mid"
    path.write_bytes(song.dumps_midi())
    base = [str(path), "--model", str(trained_model), "--candidates", "3", "--temperature", "1.3"]
    for command, stem in (("infill", "infill"), ("arrange", "arrangement")):
        out = tmp_path / command
        args = [command, *base, "--bars", "3-5", "-o", str(out), "--max-polyphony", "1"]
        run = CliRunner().invoke(app, args)
        assert run.exit_code == 0, run.output
        for rank in (1, 2, 3):
            new = load_score(out / f"{stem}_{rank}_continuation.mid")
            assert most_keys_at_once(new) <= 1 and new.note_num() > 0
            meta = json.loads((out / f"{stem}_{rank}.json").read_text())
            assert meta["steering"] == {"max_polyphony": 1}
    run = CliRunner().invoke(
        app, ["complete", *base, "-o", str(tmp_path / "x"), "--max-polyphony", "0"]
    )
    assert run.exit_code == 1 and "--max-polyphony must be between 1 and 88" in run.output


def test_the_texture_is_kept_where_nothing_else_asks(copilot):
    """By default the new bars keep the context's last bars' notes a bar (within 0.5-2x)
    and bass register (a fourth below to a fifth above its 10th-percentile pitch); a density
    or bass range asked wins, and `texture="free"` drops both."""
    from pianomuse.generate.constraints import BassLine, Density
    from pianomuse.steering.compile import Scene, compile_steering

    tok = copilot.tok
    ids = tok.encode(aligned_song("002"))
    st = tok.structure
    last4 = ids[st.bar_starts(ids)[-4] :]
    pitches = st.value[last4[st.kinds(last4) == Kind.PITCH]]
    p10, per_bar = int(np.percentile(pitches, 10)), len(pitches) / 4
    scene = Scene(tok, metres=[st.id["TimeSig_2/4"]], bars=2, prompt=ids, parts=True)

    def rules(steering):
        got = compile_steering(steering, scene).grammar.constraints
        return {type(c).__name__: c for c in got}

    kept = rules(Steering(plan="off"))
    assert (kept["Density"].low, kept["Density"].high) == (
        int(np.ceil(0.5 * per_bar)),
        int(2 * per_bar),
    )
    assert (kept["BassLine"].low, kept["BassLine"].high) == (p10 - 5, p10 + 7)
    asked = rules(Steering(plan="off", density="6", bass_range="C2-C3"))
    assert (asked["Density"].low, asked["Density"].high) == (6, 6)
    assert (asked["BassLine"].low, asked["BassLine"].high) == (36, 48)
    assert "Density" not in rules(Steering(plan="off", texture="free"))
    assert "BassLine" not in rules(Steering(plan="off", texture="free"))
    assert isinstance(kept["Density"], Density) and isinstance(kept["BassLine"], BassLine)


def test_arrange_writes_a_whole_song_longer_than_one_gap(trained_model, tmp_path):
    """`arrange SONG.mid` with its default bars (all 20 of a melody) writes them window by
    window: the melody kept note for note, an accompaniment in every bar, one new track."""
    import json

    from symusic import Score, Track
    from typer.testing import CliRunner

    from pianomuse.cli import app

    song = aligned_song("004")
    melody = Score(song.tpq)
    melody.tempos, melody.time_signatures = song.tempos, song.time_signatures
    melody.tracks.append(Track(name="Lead", program=0))
    melody.tracks[0].notes = song.tracks[0].notes.filter(lambda n: n.time < song.tpq * 80)
    path = tmp_path / "melody.mid"
    path.write_bytes(melody.dumps_midi())
    out = tmp_path / "arr"
    args = ["arrange", str(path), "--model", str(trained_model), "-o", str(out)]
    r = CliRunner().invoke(app, [*args, "--candidates", "2"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "arrangement_1.json").read_text())
    assert meta["kind"] == "arrange" and meta["bars"] == 20 and meta["context"]["windows"] == 3
    full = load_score(out / "arrangement_1.mid")
    assert full.tracks[0].notes == load_score(path).tracks[0].notes  # the melody, untouched
    assert [t.name for t in full.tracks] == ["Lead", "Piano Muse"]
    onsets = notes_in_beats(load_score(out / "arrangement_1_continuation.mid"))["onset"]
    bars_with_notes = set((onsets // 4).astype(int).tolist())
    assert len(bars_with_notes) >= 18  # nearly every bar of the twenty is accompanied
