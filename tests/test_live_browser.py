"""The Live panel in a real browser: a phrase played through the same handler Web MIDI input
calls, the answer drawn on the rolling roll and voiced by the page's synthesiser, the jam
downloaded with both parts. A picture of the panel goes to test-artifacts/live_panel.png."""

from __future__ import annotations

from pianomuse.tokenizer import load_score
from test_serve_browser import ARTIFACTS, COUNT_COLOUR, pytestmark  # noqa: F401 - the skip mark
from test_serve_steering_browser import _fill, _severe, _wait

PLAYER_INK, COPILOT_INK = (0x5B, 0x6B, 0x8C), (0xE0, 0x68, 0x3A)
# A bar of 4/4 at 120 bpm: eight eighth notes up and down a C major arpeggio.
PHRASE = [60, 64, 67, 72, 67, 64, 60, 55]
PLAY = """
const [pitches] = arguments;
pitches.forEach((p, k) => {
  setTimeout(() => liveNoteOn(p, 96), 250 * k);
  setTimeout(() => liveNoteOff(p), 250 * k + 200);
});
"""


def test_a_phrase_played_live_gets_an_answer_drawn_heard_and_saved(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(server)
    d.get_log("browser")
    _wait(d, lambda d: d.find_element(By.ID, "model-info").text.startswith("model:"), 30)
    form = d.find_element(By.ID, "live-form")
    _fill(form, bpm="120", bars="1")
    d.find_element(By.ID, "live-start").click()
    _wait(d, lambda d: d.find_element(By.ID, "live-status").text.startswith("Jamming"), 30)
    d.execute_script(PLAY, PHRASE)
    # A bar of silence after the phrase, then the answer from the next bar line.
    _wait(d, lambda d: d.execute_script("return live.heard") > 0, 30)
    roll = d.find_element(By.ID, "live-roll")
    assert d.execute_script(COUNT_COLOUR, roll, *PLAYER_INK) > 100  # the phrase, drawn
    _wait(d, lambda d: d.execute_script(COUNT_COLOUR, roll, *COPILOT_INK) > 50, 10)
    assert d.execute_script("return live.late") == 0  # every answer note came ahead of time
    # Let the answer sound for a while before stopping.
    first = d.execute_script("return Math.min(...live.copilot.map((n) => n[0]))")
    _wait(d, lambda d: d.execute_script("return liveNow()") > first + 1.0, 10)
    ARTIFACTS.mkdir(exist_ok=True)
    d.find_element(By.ID, "live").screenshot(str(ARTIFACTS / "live_panel.png"))
    d.find_element(By.ID, "live-stop").click()
    link = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "a.download-jam"), 30)[0]
    link.click()
    path = d.downloads / "jam.mid"
    _wait(d, lambda d: path.exists() and path.stat().st_size > 0, 30)
    jam = load_score(path.read_bytes())
    player, copilot = (t.notes.numpy() for t in jam.tracks)
    assert player["pitch"].tolist() == PHRASE
    assert len(copilot["pitch"]) == d.execute_script("return live.copilot.length") > 0
    assert "Jam saved: 1 answers" in d.find_element(By.ID, "live-status").text
    assert _severe(d) == []
