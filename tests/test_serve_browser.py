"""End to end in a real browser: `pianomuse serve` with its bundled model, driven by headless
Chromium. Upload a real MIDI, see its roll, continue it, see and download a candidate, select
bars, infill them and accept one. A screenshot goes to test-artifacts/web_copilot.png."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pianomuse.tokenizer import load_score, merge_to_piano, notes_in_beats

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pop909_099_opening.mid"
ARTIFACTS = ROOT / "test-artifacts"

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Chromium and chromedriver (.ci/run installs the Debian packages "
    "chromium and chromium-driver)",
)

# Count the pixels of a canvas close to an RGB colour: proof that something was drawn.
COUNT_COLOUR = """
const [canvas, r, g, b] = arguments;
const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 90) n++;
}
return n;
"""
KEPT, NEW = (0x5B, 0x6B, 0x8C), (0xE0, 0x68, 0x3A)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    yield from serve()


def serve(*args: str):
    """`pianomuse serve` (with `args`) on a free port: yields its URL, stops it after."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pianomuse", "serve", "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"pianomuse serve did not start: {proc.stdout.read()}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def chromium(downloads: Path):
    """Headless Chromium saving downloads to `downloads`: yields the driver, quits after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # Chromium's own network traffic at start (component updates, sync, first-run and field
    # trial lookups) meets a closed network on a CI machine: its refused connections could
    # hold up the first page load, which then returned before the page had its title.
    profile = downloads.parent / f"{downloads.name}-profile"
    quiet = (
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        f"--user-data-dir={profile}",
    )
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100"):
        opts.add_argument(arg)
    for arg in quiet:
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.downloads = downloads
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))


def test_upload_continue_download_infill_accept(server, browser, tmp_path):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By

    d = browser
    d.get(server)
    assert d.title == "Piano Muse"  # `get` returns once the page has loaded
    _wait(d, lambda d: "pianomuse-v3" in d.find_element(By.ID, "model-info").text, 30)

    # A file that is not MIDI: one clear line on the page, no piece shown.
    bad = tmp_path / "notes.mid"
    bad.write_text("these are my notes, not a MIDI file")
    d.find_element(By.ID, "file").send_keys(str(bad))
    _wait(d, lambda d: d.find_element(By.ID, "message").is_displayed(), 30)
    assert d.find_element(By.ID, "message").text == "notes.mid: not a MIDI file (no MThd header)"
    assert not d.find_element(By.ID, "piece").is_displayed()

    # Upload: the roll shows every note of the piece.
    d.find_element(By.ID, "file").send_keys(str(EXAMPLE))
    _wait(d, lambda d: "bars" in d.find_element(By.ID, "piece-info").text, 60)
    n_notes = len(notes_in_beats(merge_to_piano(load_score(EXAMPLE)))["pitch"])
    roll = d.find_element(By.ID, "roll")
    info = d.find_element(By.ID, "piece-info").text
    assert info.startswith("16 bars") and f"{n_notes} notes" in info
    assert int(roll.get_attribute("data-notes")) == n_notes
    assert d.execute_script(COUNT_COLOUR, roll, *KEPT) > 500

    # Continue by 2 bars, 2 candidates: two rolls with new notes drawn.
    form = d.find_element(By.ID, "continue-form")
    for name, value in (("bars", "2"), ("candidates", "2")):
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    d.find_element(By.ID, "continue").click()
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".candidate canvas")) == 2)
    assert "2 continuations from bar 17" in d.find_element(By.ID, "results-title").text
    for canvas in d.find_elements(By.CSS_SELECTOR, ".candidate canvas"):
        assert int(canvas.get_attribute("data-notes")) > 0
        assert d.execute_script(COUNT_COLOUR, canvas, *NEW) > 50  # the new bars, highlighted
    assert d.find_element(By.ID, "progress").get_attribute("hidden") is not None
    assert not d.find_element(By.ID, "progress").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    d.set_window_size(1400, 1500)
    d.execute_script("window.scrollTo({top: 0, behavior: 'instant'})")
    d.save_screenshot(str(ARTIFACTS / "web_copilot.png"))
    d.set_window_size(1400, 1100)

    # Play (a Web Audio graph starts without error), then download the best candidate.
    d.find_element(By.CSS_SELECTOR, ".candidate button").click()
    assert d.find_element(By.ID, "message").get_attribute("hidden") is not None
    d.find_element(By.CSS_SELECTOR, ".candidate a.download").click()
    path = _wait(d, lambda d: next(iter(d.downloads.glob("*.mid")), None), 30)
    time.sleep(0.5)  # let the browser finish writing
    got = merge_to_piano(load_score(path))
    assert path.name == "pop909_099_opening_continuation_1.mid"
    assert len(notes_in_beats(got)["pitch"]) > n_notes

    # Infill: drag across bars 5-6 on the roll, rewrite them, accept candidate 1.
    d.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", roll)
    x5, x6, y = d.execute_script(
        "const c = arguments[0], g = c.geometry, r = c.getBoundingClientRect();"
        "return [5, 6].map(b => r.left + (g.view.bar_beats[b - 1] + 0.5 - g.from) * g.ppb)"
        ".concat([r.top + 40]);",
        roll,
    )
    drag = ActionBuilder(d)
    drag.pointer_action.move_to_location(int(x5), int(y)).pointer_down()
    drag.pointer_action.move_to_location(int(x6), int(y)).pointer_up()
    drag.perform()
    assert d.find_element(By.ID, "gap").text == "bars 5–6"
    infill = d.find_element(By.ID, "infill-form")
    box = infill.find_element(By.NAME, "candidates")
    box.clear()
    box.send_keys("2")
    d.find_element(By.ID, "infill").click()
    _wait(d, lambda d: "rewrites of bars 5–6" in d.find_element(By.ID, "results-title").text)
    assert len(d.find_elements(By.CSS_SELECTOR, ".candidate canvas")) == 2
    d.find_element(By.CSS_SELECTOR, ".candidate button.accept").click()
    assert "fills bars 5–6" in d.find_element(By.ID, "message").text
    assert d.find_element(By.ID, "piece-info").text.startswith("16 bars")
    # No script error; the one failed request is the bad upload's expected 400.
    logs = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert [e for e in logs if "/api/piece" not in e["message"]] == [], logs
    assert len(logs) == 1 and "status of 400" in logs[0]["message"]
