"""The sweep journey in a real browser: a 12-run grid (lr × rank) started from the Train page's Sweep
section shows live on Compare (status line, parallel coordinates, trials table) until it completes.

Runs `streamlit run app.py` on a free port with its own runs directory; the tiny trials (10 digits per
class, one epoch) train in the server process (`WORKBENCH_EXECUTOR=thread`), so the whole journey takes
well under two minutes. Skipped when /usr/bin/chromium is absent. Screenshots: artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser import CHROMIUM, chromium_page, number, select, serve_app, settle, shot, until

pytestmark = pytest.mark.e2e

# The parallel-coordinates traces on the page: how many axes, and how many lines (values of the first axis).
PARCOORDS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(el => (el.data || [])
  .filter(t => t.type === 'parcoords').map(t => ({axes: t.dimensions.length,
    labels: t.dimensions.map(d => d.label),
    lines: (v => v.length !== undefined ? v.length : Math.floor(atob(v.bdata).length / 8))(t.dimensions[0].values)})))"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    runs = tmp_path_factory.mktemp("e2e-sweep") / "runs"
    with serve_app(runs, runs.parent / "streamlit.log", env={"WORKBENCH_EXECUTOR": "thread"}) as (url, _):
        yield url


def _text(page: Any) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def test_a_twelve_run_sweep_shows_live_in_parallel_coordinates(app: str) -> None:
    with chromium_page(90_000) as page:
        page.goto(f"{app}/train")
        settle(page)
        select(page, "Dataset", "digits")
        number(page, "Epochs", 1)
        page.get_by_text("Data split, size and regularisation").click()
        settle(page)
        number(page, "Training examples per class (0 = all)", 10)

        page.get_by_text("Sweep: search over settings").click()
        settle(page)
        box = page.locator('input[role="combobox"][aria-label*="Settings to sweep"]')
        box.click()
        box.fill("method_options.rank")
        page.keyboard.press("Enter")
        settle(page)
        page.keyboard.press("Escape")
        ranks = page.locator('input[aria-label="method_options.rank"]')
        ranks.fill("2, 4, 8, 16")
        ranks.press("Enter")
        settle(page)
        assert "grid: 12 runs" in _text(page)  # lr's default pick (3 values) × 4 ranks
        page.get_by_role("button", name="Start sweep (12 runs)").click()
        settle(page)
        shot(page, "sweep-train")

        page.get_by_text("Watch it on Compare").click()
        settle(page)
        assert "/compare?sweep=sweep-" in page.url
        until(lambda: "running ·" in _text(page) and page.evaluate(PARCOORDS), 60, "the live sweep and its chart")
        assert "refreshes every" in _text(page)
        first = page.evaluate(PARCOORDS)[0]
        assert first["labels"] == ["lr (log)", "method_options.rank", "val_accuracy"]
        shot(page, "sweep-compare-live")
        # Lines are added as trials start, without a reload; the section stops refreshing when the sweep ends.
        until(lambda: "completed ·" in _text(page), 120, "the sweep to complete")
        settle(page)
        text = _text(page)
        assert "12 trials of 12 started: 12 complete" in text and "refreshes every" not in text
        final = page.evaluate(PARCOORDS)[0]
        assert final["lines"] == 12 and final["lines"] > first["lines"]
        shot(page, "sweep-compare-done")
