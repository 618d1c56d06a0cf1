"""The app in a real browser: start a run from the Train page, watch its loss curve grow, stop it,
start a second one, compare both. Screenshots of every page land in artifacts/screenshots/.

Runs `streamlit run app.py` as a subprocess on a free port with its own runs directory and drives
Debian's Chromium through Playwright (no browser download). Skipped when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM, chromium_page, serve_app, worker_pids
from browser import charts as _charts
from browser import nav as _nav
from browser import number as _number
from browser import points as _points
from browser import select as _select
from browser import settle as _settle
from browser import shot as _shot
from browser import statuses as _statuses
from browser import until as _until

pytestmark = pytest.mark.e2e

# Records whether the page ever showed "stopping…" (the state can last well under a second).
WATCH_STOPPING = """() => { window.__stopping = false;
  new MutationObserver(() => { if (document.body.innerText.includes('stopping')) window.__stopping = true; })
    .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""
SERVER: dict[str, int] = {}
HAS_TEXT = """(text) => Array.from(document.querySelectorAll('span, p, div')).some(
  el => el.childElementCount === 0 && el.textContent.trim() === text)"""


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    runs = tmp_path_factory.mktemp("e2e") / "runs"
    with serve_app(runs, runs.parent / "streamlit.log") as (url, server):
        SERVER["pid"] = server.pid
        yield url, runs


@pytest.fixture(scope="module")
def browser_page(app_server: tuple[str, Path]) -> Iterator[Any]:
    with chromium_page() as tab:
        yield tab


# -- first visitors after a restart (runs first: the server is fresh) ----------------------------------------
def test_first_visitors_deep_linking_at_once_get_the_app(app_server: tuple[str, Path], browser_page: Any) -> None:
    """A class opening links at the same moment, right after the server started: every tab gets the
    app's navigation and its page, none a bare page script or a half-imported module."""
    url, _ = app_server
    browser = browser_page.context.browser
    contexts = [browser.new_context(viewport={"width": 1440, "height": 900}) for _ in range(4)]
    try:
        tabs = []
        for ctx, path in zip(contexts, ("runs", "compare", "train", "runs"), strict=True):
            tab = ctx.new_page()
            tab.set_default_timeout(90_000)
            tab.goto(f"{url}/{path}", wait_until="commit")
            tabs.append(tab)
        for tab, title in zip(tabs, ("Runs", "Compare", "Train", "Runs"), strict=True):
            _settle(tab)  # also asserts that no exception is shown
            nav = tab.locator('[data-testid="stSidebarNav"]')
            _until(lambda n=nav: n.get_by_text("Data & Models", exact=True).count() == 1, 60, "the app's navigation")
            for helper in ("resources", "engine calls", "format", "plots", "nav", "widgets"):
                assert nav.get_by_text(helper, exact=True).count() == 0, f"helper module {helper!r} listed as a page"
            heading = tab.get_by_role("heading", name=title, exact=True)
            try:  # a bounced first run reruns through app.py: the page's own heading follows shortly
                _until(lambda h=heading: h.count() >= 1, 60, f"the {title} page")
            except AssertionError:
                _shot(tab, f"first-visitor-{title.lower()}")
                raise AssertionError((title, tab.url, tab.locator("h1").all_inner_texts())) from None
    finally:
        for ctx in contexts:
            ctx.close()


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
    _number(page, "Epochs", 200)  # the form's maximum: it is stopped below
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

    # 3. Stop it from the page: "stopping…" at once (button disabled), then "stopped", without a reload.
    page.evaluate(WATCH_STOPPING)
    page.locator(".st-key-runs_stop button").first.click()
    _until(lambda: _statuses(runs).get(first_id) == "stopped", 60, "the run to stop")
    page.wait_for_function(HAS_TEXT, arg="stopped", polling=100, timeout=30_000)
    # "stopping…" is shown while the run finishes its batch; a run that ended before the page's next
    # redraw (under a loaded full suite the redraw can take longer than one small batch) has nothing to show.
    with sqlite3.connect(runs / "workbench.db") as db:
        asked, ended = db.execute("SELECT stop_requested, ended FROM runs WHERE id = ?", (first_id,)).fetchone()
    assert page.evaluate("() => window.__stopping") or ended - asked < 1.0, "the page never said 'stopping…'"
    assert page.url.endswith(f"run={first_id}")

    # 4. A second, short run (30 images per class, another seed): the form kept its values.
    _nav(page, "Train")
    assert "mnist-5k-unseen" in page.locator('input[aria-label="Dataset"]').input_value()
    _number(page, "Epochs", 150)  # long enough to still train when Compare opens
    _number(page, "Seed", 1)
    page.get_by_text("Data split, size and regularisation").click()
    _number(page, "Training examples per class (0 = all)", 30)
    _until(lambda: page.locator('[data-testid="stMetricValue"]', has_text=re.compile(r"^150$")).count() > 0, 60,
           "the preview to show 150 training examples")
    page.locator(".st-key-train_start button").click()
    page.wait_for_url(re.compile(r"/runs\?run="), timeout=60_000)
    second_id = re.search(r"run=([0-9a-f-]+)", page.url).group(1)
    assert second_id != first_id

    # 5. Compare both while the second still trains, from a shareable URL: the page flips the second
    #    run to "completed" by itself when it ends (no reload), and both curves are there.
    page.goto(f"{url}/compare?runs={first_id},{second_id}")
    _settle(page)
    assert _statuses(runs)[second_id] in ("queued", "running"), "the second run ended before Compare opened"
    _until(lambda: _statuses(runs).get(second_id) == "completed", 120, "the second run to complete")
    body = lambda: page.evaluate("() => document.body.innerText")  # noqa: E731
    try:
        _until(lambda: "✓ completed 1" in body(), 30, "Compare to show the second run completed")
    except AssertionError as exc:  # say what the page showed instead (this step has been load-sensitive)
        _shot(page, "compare-not-flipped")
        said = [line for line in body().splitlines() if line.startswith(("Status:", "Some runs are still"))]
        raise AssertionError(f"{exc}; the page said {said} (screenshot compare-not-flipped)") from None
    traces = _until(lambda: [t for t in _charts(page).get("train/loss by run", []) if t["n"] > 0], 60,
                    "two compared curves")
    assert len(traces) == 2, traces
    assert f"runs={first_id}" in page.url.replace("%2C", ",")
    _settle(page)
    _shot(page, "compare")

    # 5b. The finished run on the Runs page.
    page.goto(f"{url}/runs?run={second_id}")
    _settle(page)
    _shot(page, "runs-completed")

    # 6. The remaining pages render without an exception.
    for label, name in (("Learn", "learn"), ("Data & Models", "data-models"), ("Home", "home")):
        _nav(page, label)
        _shot(page, name)


def test_an_upload_error_is_visible_text(app_server: tuple[str, Path], browser_page: Any, tmp_path: Path) -> None:
    url, _runs = app_server
    page = browser_page
    page.goto(f"{url}/")  # (a first visitor's deep link gets Streamlit's "page not found" once)
    _settle(page)
    _nav(page, "Data & Models")
    page.get_by_role("tab", name="Your files").click()
    bad = tmp_path / "scores.csv"
    bad.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n")
    page.locator('[role="tabpanel"]:visible [data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(bad))
    error = page.locator('[data-testid="stAlertContentError"]:visible').first
    error.wait_for(timeout=60_000)
    assert "PDF" in error.inner_text() and error.is_visible(), error.inner_text()
    _shot(page, "upload-error")


def test_kill_9_of_the_engine_worker_leaves_the_app_answering(app_server: tuple[str, Path], browser_page: Any) -> None:
    """A worker dies mid-run (the kernel's OOM killer sends SIGKILL): its run is marked with the reason
    on the open page, the server keeps answering, and the next run trains in a fresh worker."""
    import os
    import signal

    url, runs = app_server
    page = browser_page
    page.goto(f"{url}/")
    _settle(page)
    _nav(page, "Train")
    _select(page, "Dataset", "mnist-5k-unseen")
    _number(page, "Epochs", 200)
    page.locator(".st-key-train_start button").click()
    page.wait_for_url(re.compile(r"/runs\?run="), timeout=60_000)
    victim = re.search(r"run=([0-9a-f-]+)", page.url).group(1)
    _until(lambda: _statuses(runs).get(victim) == "running", 60, "the run to train")
    time.sleep(2.0)
    for pid in worker_pids(SERVER["pid"]):
        os.kill(pid, signal.SIGKILL)
    _until(lambda: _statuses(runs).get(victim) == "interrupted", 30, "the run to be marked")
    page.wait_for_function("() => document.body.innerText.includes('SIGKILL')", polling=200, timeout=30_000)
    _shot(page, "runs-worker-killed")
    _settle(page)
    before = set(_statuses(runs))
    page.locator(".st-key-runs_again button").first.click()
    after = _until(lambda: next((r for r in _statuses(runs) if r not in before), None), 30, "the next run")
    _until(lambda: _statuses(runs).get(after) in ("running", "completed"), 120, "a fresh worker to take the run")
    page.wait_for_url(re.compile(rf"run={after}"), timeout=30_000)
    _settle(page)
    if _statuses(runs)[after] == "running":
        page.locator(".st-key-runs_stop button").first.click()
    _until(lambda: _statuses(runs).get(after) in ("stopped", "completed"), 60, "the last run to end")
