"""Speech in a real browser: the Train page shows a new voice's recordings (players, waveform, log-mel),
the browser can play every one it is given, the Data & Models page offers the microphone; then a run
adapts the spoken-digit model to the new voice and its page says before → after.
Screenshots: artifacts/screenshots/speech-*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser import CHROMIUM, chromium_page, nav, number, select, serve_app, settle, shot, until

pytestmark = pytest.mark.e2e

AUDIO_STATE = """() => Array.from(document.querySelectorAll('audio')).map(a => ({
  src: !!a.currentSrc || !!a.src, error: a.error ? a.error.code : null, duration: a.duration,
  wav: a.canPlayType('audio/wav')}))"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    runs = tmp_path_factory.mktemp("speech") / "runs"
    with serve_app(runs, runs.parent / "streamlit.log") as (url, _), chromium_page() as tab:
        yield url, tab


def test_a_new_voice_is_shown_played_and_adapted_to(page: tuple[str, Any]) -> None:
    url, tab = page
    tab.goto(f"{url}/train")
    settle(tab)
    select(tab, "Dataset", "fsdd-new-voice")
    until(lambda: len(tab.evaluate(AUDIO_STATE)) >= 2, 60, "the recordings' players")
    # Every player has a source the browser can decode: metadata loads (a duration), no media error.
    until(lambda: all(a["duration"] and a["duration"] > 0 for a in tab.evaluate(AUDIO_STATE)), 30, "audio metadata")
    for player in tab.evaluate(AUDIO_STATE):
        assert player["src"] and player["error"] is None and player["wav"] in ("maybe", "probably"), player
    assert tab.get_by_text("log-mel (what the model reads)").count() >= 1
    assert tab.locator('input[role="combobox"][aria-label="Model"]').input_value().startswith("spoken-digit-cnn")
    shot(tab, "speech-train")
    number(tab, "Epochs", 20)
    tab.get_by_text("Data split, size and regularisation").click()
    number(tab, "Training examples per class (0 = all)", 5)  # 5 recordings per digit, as in docs/results.md
    tab.locator(".st-key-train_start button").click()
    tab.wait_for_url(re.compile(r"/runs\?run="), timeout=60_000)
    until(lambda: tab.get_by_text("before adaptation", exact=False).count() >= 1, 180, "the before → after line")
    settle(tab)
    shot(tab, "speech-run")
    nav(tab, "Data & Models")
    tab.get_by_role("tab", name="Your voice").click()
    settle(tab)
    assert tab.get_by_text("Say it (one digit per recording)").count() == 1  # the microphone widget
    shot(tab, "speech-voice")
