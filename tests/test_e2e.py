"""The app in a real browser: start a run from the Train page, watch its loss curve grow, stop it,
start a second one, compare both. Screenshots of every page land in artifacts/screenshots/.

Runs `streamlit run app.py` as a subprocess on a free port with its own runs directory and drives
Debian's Chromium through Playwright (no browser download). Skipped when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "artifacts" / "screenshots"
# Points per chart, keyed by title: el.data holds the traces Plotly drew. Arrays arrive either as
# plain arrays or as base64 typed arrays ({dtype: "f8", bdata: "..."}), whose length is bytes / itemsize.
CHART_POINTS = """() => {
  const size = {f8: 8, f4: 4, i8: 8, u8: 8, i4: 4, u4: 4, i2: 2, u2: 2, i1: 1, u1: 1, u1c: 1};
  const count = v => !v ? 0 : (v.length !== undefined ? v.length
      : (v.bdata ? Math.floor(atob(v.bdata).length / (size[String(v.dtype).replace(/[<>|=]/g, '')] || 8)) : 0));
  return Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
    title: (el.layout && el.layout.title && el.layout.title.text) || '',
    traces: (el.data || []).map(t => ({name: t.name || '', n: count(t.y)}))}));
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    runs = tmp_path_factory.mktemp("e2e") / "runs"
    port = _free_port()
    log = (runs.parent / "streamlit.log").open("w")
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("streamlit did not become healthy: "
                                   + (runs.parent / "streamlit.log").read_text()[-2000:])
            time.sleep(0.3)
        yield url, runs
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser_page(app_server: tuple[str, Path]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        page.set_default_timeout(60_000)
        yield page
        browser.close()


# -- helpers ----------------------------------------------------------------------------------------
def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _settle(page: Any) -> None:
    """Wait until the script run finished (Streamlit's running indicator is gone)."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    time.sleep(1.0)
    _until(lambda: page.locator('[data-testid="stStatusWidget"]').count() == 0, 90, "the script run")
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def _charts(page: Any) -> dict[str, list[dict[str, Any]]]:
    return {c["title"]: c["traces"] for c in page.evaluate(CHART_POINTS)}


def _points(page: Any, title: str, name: str | None = None) -> int:
    traces = _charts(page).get(title, [])
    return sum(t["n"] for t in traces if name is None or t["name"] == name)


def _shot(page: Any, name: str) -> Path:
    """Screenshot the whole page: Streamlit scrolls inside stMain, so grow the viewport to fit it."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body).scrollHeight")
    page.set_viewport_size({"width": 1440, "height": max(900, min(int(height) + 40, 6000))})
    time.sleep(1.0)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1440, "height": 900})
    return path


def _select(page: Any, label: str, value: str) -> None:
    box = page.locator(f'input[role="combobox"][aria-label="{label}"]')
    box.click()
    box.fill(value)
    page.get_by_role("option", name=re.compile(rf"·\s+{re.escape(value)}$")).click()
    _settle(page)


def _number(page: Any, label: str, value: int) -> None:
    field = page.locator(f'input[type="number"][aria-label="{label}"]')
    field.fill(str(value))
    field.press("Enter")
    _settle(page)


def _nav(page: Any, label: str) -> None:
    """Sidebar navigation keeps the browser session (and so the Train form's values)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
    _settle(page)


def _statuses(runs: Path) -> dict[str, str]:
    with sqlite3.connect(runs / "workbench.db") as db:
        return dict(db.execute("SELECT id, status FROM runs"))


# -- the journey --------------------------------------------------------------------------------------
def test_train_watch_stop_compare(app_server: tuple[str, Path], browser_page: Any) -> None:
    url, runs = app_server
    page = browser_page

    page.goto(f"{url}/")
    _settle(page)
    page.locator("h1", has_text="PEFT Workbench").wait_for()
    _shot(page, "home-empty")

    # 1. Train: a built-in model and dataset; a run long enough to watch (it is stopped below).
    _nav(page, "Train")
    _select(page, "Dataset", "mnist-5k-unseen")
    _until(lambda: "mnist-cnn" in page.locator('input[aria-label="Model"]').input_value(), 60,
           "the model list to offer image models only")
    _number(page, "Epochs", 40)
    page.get_by_text("Trainable parameters", exact=True).first.wait_for()
    assert _points(page, "Learning-rate schedule: constant") > 0
    _shot(page, "train")
    page.locator(".st-key-train_start button").click()

    # 2. Runs: the loss chart gains points while the run trains.
    page.wait_for_url(re.compile(r"/runs\?run="), timeout=60_000)
    first_id = re.search(r"run=([0-9a-f-]+)", page.url).group(1)
    _until(lambda: _points(page, "Loss", "train loss (raw)") > 0, 90, "the first loss points")
    before = _points(page, "Loss", "train loss (raw)")
    _until(lambda: _points(page, "Loss", "train loss (raw)") > before, 30, "the loss chart to grow")
    _until(lambda: _points(page, "Learning rate") > 0 and _points(page, "Throughput") > 0, 30,
           "the learning-rate and throughput charts")
    _shot(page, "runs-live")

    # The run's state lives in the server, not the tab: a fresh tab (a new session, as after a reload)
    # opened on the shared URL shows the same run, and closing it stops nothing.
    other = page.context.new_page()
    other.goto(page.url)
    _until(lambda: _points(other, "Loss", "train loss (raw)") > 0, 60, "the loss chart in a fresh tab")
    other.close()
    assert _statuses(runs)[first_id] == "running"

    # 3. Stop it from the page.
    page.locator(".st-key-runs_stop button").click()
    _until(lambda: _statuses(runs).get(first_id) == "stopped", 60, "the run to stop")
    _until(lambda: page.locator('[data-testid="stBadge"], span', has_text="stopped").count() > 0, 30,
           "the page to show 'stopped'")

    # 4. A second, short run (30 images per class, another seed): the form kept its values.
    _nav(page, "Train")
    assert "mnist-5k-unseen" in page.locator('input[aria-label="Dataset"]').input_value()
    _number(page, "Epochs", 2)
    _number(page, "Seed", 1)
    page.get_by_text("Data split, size and regularisation").click()
    _number(page, "Training examples per class (0 = all)", 30)
    _until(lambda: page.locator('[data-testid="stMetricValue"]', has_text=re.compile(r"^150$")).count() > 0, 60,
           "the preview to show 150 training examples")
    page.locator(".st-key-train_start button").click()
    page.wait_for_url(re.compile(r"/runs\?run="), timeout=60_000)
    second_id = re.search(r"run=([0-9a-f-]+)", page.url).group(1)
    assert second_id != first_id
    _until(lambda: _statuses(runs).get(second_id) == "completed", 90, "the second run to complete")
    _until(lambda: page.locator("span", has_text="completed").count() > 0, 30, "the page to show 'completed'")
    _settle(page)
    _shot(page, "runs-completed")

    # 5. Compare both, from a shareable URL.
    page.goto(f"{url}/compare?runs={first_id},{second_id}")
    _settle(page)
    traces = _until(lambda: [t for t in _charts(page).get("train/loss by run", []) if t["n"] > 0], 60,
                    "two compared curves")
    assert len(traces) == 2, traces
    assert f"runs={first_id}" in page.url.replace("%2C", ",")
    _shot(page, "compare")

    # 6. The remaining pages render without an exception.
    for label, name in (("Learn", "learn"), ("Data & Models", "data-models"), ("Home", "home")):
        _nav(page, label)
        _shot(page, name)
