"""The sweep journey in a real browser: a 12-run grid (lr × rank) started from the Train page's Sweep
section shows live on Compare (status line, parallel coordinates, trials table) until it completes.

The setup is the issue's cluster setup (`ray-postgres`): the app sends every trial to a real Ray
cluster on 127.0.0.1 (a head with two worker processes) and keeps runs and metrics in a real
PostgreSQL server; a worker is killed mid-sweep, and the page must show that trial failed while the
other eleven complete. (`local`, the trials in the server process with SQLite, runs the same journey:
`E2E_SWEEP_SETUPS=local,ray-postgres pytest tests/test_e2e_sweep.py`; the default suite leaves it to the
AppTest journey in tests/test_sweep_pages.py, which drives the same pages.) Skipped when
/usr/bin/chromium is absent.
Screenshots: artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from browser import CHROMIUM, chromium_page, number, select, serve_app, settle, shot, until

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

# The parallel-coordinates traces on the page: how many axes, and how many lines (values of the first axis).
PARCOORDS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(el => (el.data || [])
  .filter(t => t.type === 'parcoords').map(t => ({axes: t.dimensions.length,
    labels: t.dimensions.map(d => d.label),
    lines: (v => v.length !== undefined ? v.length : Math.floor(atob(v.bdata).length / 8))(t.dimensions[0].values)})))"""


SETUPS = os.environ.get("E2E_SWEEP_SETUPS", "ray-postgres").split(",")


@pytest.fixture(scope="module", params=SETUPS)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    runs = tmp_path_factory.mktemp("e2e-sweep") / "runs"
    env, cluster = {"WORKBENCH_EXECUTOR": "thread"}, None
    if request.param == "ray-postgres":
        from ray_cluster import LOOPBACK_ENV, LocalRayCluster

        cluster = LocalRayCluster(num_cpus=2)
        env = {"WORKBENCH_EXECUTOR": "ray", "WORKBENCH_RAY_ADDRESS": cluster.start(), **LOOPBACK_ENV,
               "WORKBENCH_STORE_URL": request.getfixturevalue("postgres_server").new_database()}
    try:
        with serve_app(runs, runs.parent / "streamlit.log", env=env) as (url, _):
            yield {"url": url, "setup": request.param, "runs": runs, "store_url": env.get("WORKBENCH_STORE_URL")}
    finally:
        if cluster is not None:
            cluster.stop()


def _kill_a_running_trial(app: dict[str, Any]) -> str:
    """SIGKILL the Ray worker process of a trial that is training now; returns that trial's run id."""
    from workbench.runs import RunStore

    store = RunStore(app["runs"], url=app["store_url"])

    def victim():
        for record in store.list_runs(["running"]):
            where = app["runs"] / record.id / "executor.json"
            rows = store.metrics(record.id, keys=["train/loss"])
            if where.exists() and len(rows) >= 1 and rows.epoch.max() == 0:  # in its first of 3 epochs: mid-run
                return record.id, json.loads(where.read_text())["pid"]
        return None
    run_id, pid = until(victim, 120, "a trial training on a Ray worker")
    os.kill(pid, signal.SIGKILL)
    return run_id


def _text(page: Any) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def test_a_twelve_run_sweep_shows_live_in_parallel_coordinates(app: dict[str, Any]) -> None:
    with chromium_page(90_000) as page:
        page.goto(f"{app['url']}/train")
        settle(page)
        select(page, "Dataset", "digits")
        number(page, "Epochs", 1 if app["setup"] == "local" else 3)  # (on Ray: long enough to kill one mid-run)
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
        shot(page, f"sweep-compare-live-{app['setup']}")
        killed = _kill_a_running_trial(app) if app["setup"] == "ray-postgres" else None
        # Lines are added as trials start, without a reload; the section stops refreshing when the sweep ends.
        until(lambda: "completed ·" in _text(page), 180, "the sweep to complete")
        settle(page)
        text = _text(page)
        expected = "12 complete" if killed is None else "11 complete · 1 failed"
        assert f"12 trials of 12 started: {expected}" in text and "refreshes every" not in text, text[:1500]
        final = page.evaluate(PARCOORDS)[0]
        assert final["lines"] == 12 and final["lines"] > first["lines"]
        shot(page, f"sweep-compare-done-{app['setup']}")
