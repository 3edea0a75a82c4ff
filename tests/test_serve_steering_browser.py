"""Steering in a real browser: `pianomuse serve` with the tiny chord-aware model trained by
the test fixtures, driven by headless Chromium. The chord lane shows the chords the model
reads; chords, a key, a register and the keys at once typed on the page reach the server
and shape the new music; a melody alone gets an accompaniment. A screenshot goes to
test-artifacts/web_steering.png."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile

from onsets import onsets, recall
from pianomuse.tokenizer import load_score, notes_in_beats, seconds_at
from pianomuse.tokenizer.synth import sounding_seconds
from serve_helpers import midi_b64, post
from test_serve_browser import CHROMIUM, DRIVER, _wait

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pop909_099_opening.mid"
SONG = ROOT / "tests" / "data" / "pop909" / "002" / "002.mid"
ARTIFACTS = ROOT / "test-artifacts"
CHORD_INK, NEW_CHORD_INK = (0x34, 0x40, 0x54), (0xC4, 0x50, 0x1F)
# Pixels close to an RGB colour in the chord band along the top of a roll.
COUNT_IN_LANE = """
const [canvas, r, g, b] = arguments;
const rows = canvas.geometry.lane * (window.devicePixelRatio || 1);
const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, rows).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 90) n++;
}
return n;
"""
C_MAJOR = {0, 2, 4, 5, 7, 9, 11}
B_MAJOR = {11, 1, 3, 4, 6, 8, 10}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Chromium and chromedriver (.ci/run installs the Debian packages "
    "chromium and chromium-driver)",
)


def _open(d, server, midi: Path) -> None:
    """A fresh page with `midi` uploaded, and the browser's log emptied."""
    from selenium.webdriver.common.by import By

    d.get(server)
    d.get_log("browser")
    _wait(d, lambda d: d.find_element(By.ID, "model-info").text.startswith("model:"), 30)
    d.find_element(By.ID, "file").send_keys(str(midi))
    _wait(d, lambda d: "bars" in d.find_element(By.ID, "piece-info").text, 60)


def _fill(form, **values) -> None:
    from selenium.webdriver.common.by import By

    for name, value in values.items():
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)


def _download(d, css: str, name: str) -> Path:
    """Click the first candidate's link `css` and wait for the file `name`."""
    from selenium.webdriver.common.by import By

    d.find_element(By.CSS_SELECTOR, f".candidate {css}").click()
    path = d.downloads / name
    return _wait(d, lambda d: path if path.exists() and path.stat().st_size > 0 else None, 30)


def _select_bars(d, first: int, last: int) -> None:
    """Drag across bars first..last (1-based) on the piece's roll."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By

    roll = d.find_element(By.ID, "roll")
    d.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", roll)
    xa, xb, y = d.execute_script(
        "const [c, a, b] = arguments, g = c.geometry, r = c.getBoundingClientRect();"
        "return [a, b].map(k => r.left + (g.view.bar_beats[k - 1] + 0.5 - g.from) * g.ppb)"
        ".concat([r.top + 40]);",
        roll,
        first,
        last,
    )
    drag = ActionBuilder(d)
    drag.pointer_action.move_to_location(int(xa), int(y)).pointer_down()
    drag.pointer_action.move_to_location(int(xb), int(y)).pointer_up()
    drag.perform()


def _lane_chords(d, roll) -> list:
    """The chords a roll shows in its chord band, [beat, symbol]."""
    return json.loads(d.execute_script("return arguments[0].dataset.chords", roll))


SIDECAR = "pop909_099_opening_continuation_1.json"  # the first candidate's, downloaded


def _continue_one(d, bars: str) -> dict:
    """Continue the example by `bars` bars, one candidate; that candidate's sidecar."""
    from selenium.webdriver.common.by import By

    _fill(d.find_element(By.ID, "continue-form"), bars=bars, candidates="1")
    d.find_element(By.ID, "continue").click()
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".candidate canvas")) == 1, 60)
    (d.downloads / SIDECAR).unlink(missing_ok=True)  # an earlier test's download
    return json.loads(_download(d, "a.download-json", SIDECAR).read_text())


def _severe(d) -> list:
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE"]


def test_the_chord_lane_shows_the_chords_the_model_reads(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server, EXAMPLE)
    status, view, _ = post(f"{server}/api/piece", {"midi": midi_b64(EXAMPLE), "name": "x.mid"})
    assert status == 200 and len(view["chords"]) >= 8
    roll = d.find_element(By.ID, "roll")
    assert _lane_chords(d, roll) == view["chords"]
    assert d.execute_script("return arguments[0].geometry.lane", roll) == 18
    assert d.execute_script(COUNT_IN_LANE, roll, *CHORD_INK) > 200  # labels and ticks drawn
    # The chords box starts from the piece's last four chords, one a bar.
    chords = d.find_element(By.CSS_SELECTOR, "#steering-form [name=chords]")
    assert chords.get_attribute("value") == " ".join(c[1] for c in view["chords"][-4:])
    assert _severe(d) == []


def test_chords_and_key_steer_a_continuation(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    _open(d, server, EXAMPLE)
    steer = d.find_element(By.ID, "steering-form")
    _fill(steer, chords="C G Am F")
    Select(steer.find_element(By.NAME, "key")).select_by_visible_text("C major")
    _fill(steer, max_polyphony="3")
    _fill(d.find_element(By.ID, "continue-form"), bars="4", candidates="2")
    d.find_element(By.ID, "continue").click()
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".candidate canvas")) == 2)
    assert "2 continuations from bar 17" in d.find_element(By.ID, "results-title").text

    sidecar = json.loads(
        _download(d, "a.download-json", "pop909_099_opening_continuation_1.json").read_text()
    )
    assert sidecar["steering"] == {"chords": "C G Am F", "key": "C major", "max_polyphony": 3}
    assert [(float(b), s) for b, s in sidecar["chords"]] == [
        (0.0, "C"),
        (4.0, "G"),
        (8.0, "Am"),
        (12.0, "F"),
    ]
    new = notes_in_beats(
        load_score(_download(d, "a.download-new", "pop909_099_opening_continuation_1_new.mid"))
    )
    assert len(new["pitch"]) > 0
    assert set((new["pitch"] % 12).tolist()) <= C_MAJOR
    on, off = new["onset"], new["onset"] + new["duration"]
    assert max(((on <= t + 1e-6) & (off > t + 1e-6)).sum() for t in on) <= 3
    # Each candidate's chord band shows the chords written, from the first new bar (beat 64).
    for roll in d.find_elements(By.CSS_SELECTOR, ".candidate canvas"):
        shown = [(float(b), s) for b, s in _lane_chords(d, roll)]
        assert [x for x in shown if x[0] >= 64] == [(64, "C"), (68, "G"), (72, "Am"), (76, "F")]
        assert d.execute_script(COUNT_IN_LANE, roll, *NEW_CHORD_INK) > 50  # new, in orange
    ARTIFACTS.mkdir(exist_ok=True)
    d.set_window_size(1400, 1700)
    d.execute_script("window.scrollTo({top: 0, behavior: 'instant'})")
    d.save_screenshot(str(ARTIFACTS / "web_steering.png"))
    d.set_window_size(1400, 1100)
    assert _severe(d) == []


def test_a_bad_register_is_one_line_on_the_page(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server, EXAMPLE)
    _fill(d.find_element(By.ID, "steering-form"), low="H2", high="C6")
    _fill(d.find_element(By.ID, "continue-form"), bars="1", candidates="1")
    d.find_element(By.ID, "continue").click()
    message = d.find_element(By.ID, "message")
    _wait(d, lambda d: message.is_displayed(), 60)
    assert message.text == "range: 'H2' is not a note (for example C4, F#2, Bb5)"
    assert not d.find_element(By.ID, "results").is_displayed()
    assert d.find_element(By.ID, "continue").is_enabled()  # ready for the next try


def test_a_melody_alone_gets_an_accompaniment(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from symusic import Score, Track

    # The first 32 bars (2/4) of the song's MELODY track, alone in a file.
    song = Score(str(SONG))
    melody = Score(song.tpq)
    melody.tempos, melody.time_signatures = song.tempos, song.time_signatures
    source = next(t for t in song.tracks if t.name == "MELODY")
    melody.tracks.append(Track(name="MELODY", program=0))
    melody.tracks[0].notes = source.notes.filter(lambda n: n.time < song.tpq * 64)
    path = tmp_path / "melody.mid"
    path.write_bytes(melody.dumps_midi())

    d = browser
    _open(d, server, path)
    assert d.find_element(By.ID, "piece-info").text.startswith("32 bars")
    _select_bars(d, 13, 14)
    assert d.find_element(By.ID, "gap").text == "bars 13–14"
    # Chords typed for the new bars show over the selection (beats 24-28) as they are typed.
    steer = d.find_element(By.ID, "steering-form")
    _fill(steer, chords="B F#")
    shown = _lane_chords(d, d.find_element(By.ID, "roll"))
    assert [x for x in shown if 24 <= x[0] < 28] == [[24, "B"], [26, "F#"]]
    Select(steer.find_element(By.NAME, "key")).select_by_visible_text("B major")
    _fill(steer, bass_range="B1-B2")
    _fill(d.find_element(By.ID, "infill-form"), candidates="1")
    d.find_element(By.ID, "accompany").click()
    _wait(
        d, lambda d: "accompaniments of bars 13–14" in d.find_element(By.ID, "results-title").text
    )

    sidecar = json.loads(_download(d, "a.download-json", "melody_arrange_1.json").read_text())
    assert sidecar["kind"] == "arrange"
    assert sidecar["steering"] == {"chords": "B F#", "key": "B major", "bass_range": "B1-B2"}
    assert sidecar["chords"] == [[0.0, "B"], [2.0, "F#"]]  # in the kept melody's bars
    assert sidecar["first_new_bar"] == 13 and sidecar["bars"] == 2
    got = notes_in_beats(load_score(_download(d, "a.download", "melody_arrange_1.mid")))
    mine = notes_in_beats(load_score(path))

    def notes(n: dict, inside: bool) -> Counter:
        """(onset, duration, pitch) of the notes that start inside bars 13-14 (beats 24-28),
        or outside them."""
        keep = ((n["onset"] >= 24) & (n["onset"] < 28)) == inside
        rows = zip(n["onset"][keep], n["duration"][keep], n["pitch"][keep], strict=True)
        return Counter((round(o, 4), round(du, 4), int(p)) for o, du, p in rows)

    melody, written = notes(mine, True), notes(got, True)
    assert melody.total() >= 5
    assert melody <= written  # the melody, note for note
    new = written - melody  # and the accompaniment under it
    assert new.total() == sidecar["notes"] > 0
    assert {p % 12 for _, _, p in new} <= B_MAJOR
    for a, b, bass in ((24, 26, 11), (26, 28, 6)):  # each chord's lowest note: its bass
        lowest = min(p for o, _, p in new if a <= o < b)
        assert lowest % 12 == bass and 35 <= lowest <= 47, (a, lowest)
    assert notes(got, False) == notes(mine, False)  # elsewhere the melody alone, as it was
    assert _severe(d) == []


def test_a_candidates_plan_is_edited_on_its_chord_lane(server, browser):
    """Without chords typed, a continuation is written to a plan of its own; a click on a
    new bar of its chord lane changes that bar's chords, the edited plan lands in the chords
    field, and Continue writes to it."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import alert_is_present, staleness_of
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    _open(d, server, EXAMPLE)
    _fill(d.find_element(By.ID, "steering-form"), chords="")
    sidecar = _continue_one(d, bars="2")
    plan = sidecar["plan"].split(" | ")
    assert len(plan) == 2 and sidecar["steering"] == {}
    roll = d.find_element(By.CSS_SELECTOR, ".candidate canvas")
    d.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", roll)
    x, y = d.execute_script(
        "const c = arguments[0], g = c.geometry, r = c.getBoundingClientRect();"
        "return [r.left + (g.view.bar_beats[16] + 0.5 - g.from) * g.ppb, r.top + g.lane / 2];",
        roll,
    )  # the first new bar (bar 17), in the chord band
    click = ActionBuilder(d)
    click.pointer_action.move_to_location(int(x), int(y)).click()
    click.perform()
    prompt = WebDriverWait(d, 10).until(alert_is_present())
    assert prompt.text.startswith("Chords of bar 17")
    prompt.send_keys("Am")
    prompt.accept()
    chords = d.find_element(By.CSS_SELECTOR, "#steering-form [name=chords]")
    assert chords.get_attribute("value") == f"Am | {plan[1]}"
    d.find_element(By.ID, "continue").click()
    WebDriverWait(d, 60).until(staleness_of(roll))  # the new candidate replaced it
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".candidate canvas")) == 1, 60)
    (d.downloads / SIDECAR).unlink()
    sidecar = json.loads(_download(d, "a.download-json", SIDECAR).read_text())
    assert sidecar["steering"]["chords"] == f"Am | {plan[1]}" and sidecar["plan"] is None
    assert sidecar["chords"][0] == [0.0, "Am"]
    assert _severe(d) == []


def test_a_style_file_added_on_the_page_writes_the_continuation(server, browser, style_file):
    """The style picker: a style file chosen on the page goes to the server, the picker
    selects it and says what it is, and Continue writes in it (the sidecar names it)."""
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server, EXAMPLE)
    d.find_element(By.ID, "style-file").send_keys(str(style_file))

    def info(d) -> str:
        message = d.find_element(By.ID, "message")
        if message.is_displayed() and message.text:  # the server refused it: say why
            pytest.fail(message.text)
        return d.find_element(By.ID, "style-info").text

    text = _wait(d, info, 60)
    assert text.startswith("chorales.safetensors, tuned on 6 pieces: held-out bits a note")
    picked = d.find_element(By.CSS_SELECTOR, "#steering-form [name=style] option:checked")
    assert picked.text == "chorales.safetensors (head)"
    _fill(d.find_element(By.ID, "steering-form"), chords="")
    sidecar = _continue_one(d, bars="1")
    assert sidecar["style"] == "chorales.safetensors" and sidecar["bars"] == 1
    assert _severe(d) == []


def test_a_candidate_switches_to_its_score_and_downloads_its_sound(server, browser):
    """The Score tab of a candidate shows its new bars engraved (SVG notes, one per written
    note and more where ties split one), and offers the MusicXML; its Audio button renders
    the whole piece and downloads the MP3."""
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server, EXAMPLE)
    sidecar = _continue_one(d, bars="2")
    tab = [b for b in d.find_elements(By.CSS_SELECTOR, ".candidate .tabs button")]
    assert [b.text for b in tab] == ["Roll", "Score"]
    tab[1].click()
    drawn = _wait(
        d, lambda d: d.find_elements(By.CSS_SELECTOR, ".candidate .score-view svg g.note"), 60
    )
    assert len(drawn) >= sidecar["notes"] > 0
    assert not d.find_element(By.CSS_SELECTOR, ".candidate .roll-scroll").is_displayed()
    xml = _download(d, "a.download-score", "pop909_099_opening_continuation_1_new.musicxml")
    assert b"<score-partwise" in xml.read_bytes()
    tab[0].click()
    assert d.find_element(By.CSS_SELECTOR, ".candidate .roll-scroll").is_displayed()
    mp3 = _download(d, "button.render-audio", "pop909_099_opening_continuation_1.mp3")
    samples, sr = soundfile.read(mp3)
    opening = load_score(EXAMPLE)
    n = notes_in_beats(opening)
    # The sound is the piece and its new bars: longer than the opening, and the opening's
    # notes are heard (their onsets found in the sound).
    assert len(samples) / sr > sounding_seconds(opening)
    assert recall(seconds_at(opening, n["onset"]), onsets(samples, sr)) >= 0.9
    link = d.find_element(By.CSS_SELECTOR, ".candidate a.download-mp3")
    assert link.text.startswith("Download audio (MP3, ")
    assert _severe(d) == []
