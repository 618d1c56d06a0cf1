"""The app in a real browser, shared by the end-to-end tests and the live benchmarks.

`serve_app` runs `streamlit run app.py` on a free port with its own runs directory (the app's real
defaults: engine worker processes); the helpers drive Debian's Chromium through Playwright (no
browser download) and read what the page shows, charts included.
"""

from __future__ import annotations

import contextlib
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(runs: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """The app on a free port until the block ends; yields (url, server process)."""
    port = free_port()
    runs.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "WORKBENCH_EXECUTOR": "process", **(env or {}), "WORKBENCH_RUNS_DIR": str(runs)}, stdout=log,
        stderr=subprocess.STDOUT)
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
                raise RuntimeError("streamlit did not become healthy: " + log_path.read_text()[-2000:])
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def worker_pids(server_pid: int) -> list[int]:
    """The engine worker processes of an app server (its children running `workbench.runs.worker`)."""
    pids = []
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in pids if "workbench.runs.worker" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="ignore")]


def launch(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@contextlib.contextmanager
def chromium_page(timeout_ms: int = 60_000) -> Iterator[Any]:
    """One Chromium page (1440 × 900) until the block ends: what a module's browser tests share."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        page.set_default_timeout(timeout_ms)
        yield page
        browser.close()


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def settle(page: Any) -> None:
    """Wait until the script run finished (Streamlit's running indicator is gone)."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    time.sleep(1.0)
    until(lambda: page.locator('[data-testid="stStatusWidget"]').count() == 0, 90, "the script run")
    # Elements of the previous run that this one did not draw linger, marked stale, for a moment.
    until(lambda: page.locator('[data-stale="true"]').count() == 0, 30, "stale elements to go")
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def charts(page: Any) -> dict[str, list[dict[str, Any]]]:
    return {c["title"]: c["traces"] for c in page.evaluate(CHART_POINTS)}


def points(page: Any, title: str, name: str | None = None) -> int:
    traces = charts(page).get(title, [])
    return sum(t["n"] for t in traces if name is None or t["name"] == name)


def shot(page: Any, name: str) -> Path:
    """Screenshot the whole page: Streamlit scrolls inside stMain, so grow the viewport to fit it."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body).scrollHeight")
    page.set_viewport_size({"width": 1440, "height": max(900, min(int(height) + 40, 6000))})
    time.sleep(1.0)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1440, "height": 900})
    return path


def select(page: Any, label: str, value: str) -> None:
    box = page.locator(f'input[role="combobox"][aria-label="{label}"]')
    until(lambda: box.count() == 1, 30, f"one {label!r} box (a widget of the previous run may linger)")
    box.click()
    box.fill(value)
    page.get_by_role("option", name=re.compile(rf"·\s+{re.escape(value)}$")).click()
    settle(page)


def number(page: Any, label: str, value: int) -> None:
    field = page.locator(f'input[type="number"][aria-label="{label}"]')
    field.fill(str(value))
    field.press("Enter")
    settle(page)


def nav(page: Any, label: str) -> None:
    """Sidebar navigation keeps the browser session (and so the Train form's values)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
    settle(page)


def statuses(runs: Path) -> dict[str, str]:
    with sqlite3.connect(runs / "workbench.db") as db:
        return dict(db.execute("SELECT id, status FROM runs"))
