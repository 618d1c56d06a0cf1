"""Steering, resuming and sharing runs in a real browser (issue "steer, resume, carry runs").

One story, as a teacher would live it: on the Runs page start a staged run (Run again), pause it, lower
its LR, unfreeze the next block; restart the app; Resume the run, which continues from its checkpoint
with both changes applied again; export it with two other runs as one zip; import the zip into a
second, empty workbench, whose Compare page shows the three. Screenshots: artifacts/screenshots/steer-*.png.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM, charts, chromium_page, serve_app, settle, shot, until

pytestmark = pytest.mark.e2e
STAGED = dict(model="mnist-cnn", data="digits", limit_per_class=10, batch_size=16, method="full",
              hierarchical="bottom-up", stage_epochs=40.0, epochs=120, export_model=False)
SMALL = dict(model="mnist-cnn", data="digits", limit_per_class=8, epochs=2, batch_size=16, export_model=False)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    from workbench.config import TrainConfig
    from workbench.runs import RunManager

    runs = tmp_path_factory.mktemp("steer") / "runs"
    manager = RunManager(runs, executor="thread")
    for method in ("lora", "full"):  # the two others that travel with the steered run
        run_id = manager.start(TrainConfig(**SMALL, method=method))
        assert manager.wait(run_id, timeout=300) == "completed", manager.store.get_run(run_id).error
    seed_run = manager.start(TrainConfig(**STAGED, name="staged"))  # its "Run again" is what the browser starts
    manager.stop(seed_run)
    manager.wait(seed_run, timeout=300)
    manager.close()
    return runs


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with chromium_page() as tab:
        yield tab


def _db(runs: Path, query: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(runs / "workbench.db") as db:
        return db.execute(query, args).fetchall()


def _status(runs: Path, run_id: str) -> str:
    return _db(runs, "SELECT status FROM runs WHERE id = ?", run_id)[0][0]


def _applied(runs: Path, run_id: str) -> list[tuple]:
    return _db(runs, "SELECT kind, step, outcome FROM interventions WHERE run_id = ? AND applied IS NOT NULL "
                     "ORDER BY seq", run_id)


MARKS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(
  el => ((el.layout && el.layout.annotations) || []).map(a => a.text || ''))"""


def _marks(page: Any) -> list[str]:
    """The texts of the charts' annotations: the interventions' marks among them."""
    return page.evaluate(MARKS)


def _epoch(runs: Path, run_id: str) -> int:
    import json

    return json.loads(_db(runs, "SELECT progress FROM runs WHERE id = ?", run_id)[0][0] or "{}").get("epoch", 0)


def _choose(page: Any, label: str, text: str) -> None:
    """Add the choice containing `text` to the multiselect `label`: typing filters the choices, and the
    list is closed again afterwards (it would cover what lies below it)."""
    box = page.locator(f'input[role="combobox"][aria-label="{label}"]')
    option = page.get_by_role("option", name=re.compile(re.escape(text)))

    def offered() -> bool:
        box.click()
        box.fill(text)
        page.wait_for_timeout(300)
        return option.count() > 0

    until(offered, 30, f"{text!r} among the choices of {label!r}")
    option.first.click()
    settle(page)
    page.keyboard.press("Escape")
    settle(page)


def _click(page: Any, name: str) -> None:
    page.get_by_role("button", name=name).first.click()
    settle(page)


def test_pause_steer_restart_resume_export_and_import(runs_dir: Path, page: Any, tmp_path: Path) -> None:
    (seed_run,) = [r for (r,) in _db(runs_dir, "SELECT id FROM runs WHERE name = 'staged'")]
    # 1. Start the staged run from the browser; pause it once its first epoch checkpoint exists.
    with serve_app(runs_dir, runs_dir.parent / "streamlit-1.log") as (url, _):
        page.goto(f"{url}/runs?run={seed_run}")
        settle(page)
        _click(page, "Run again, seed 1")
        until(lambda: "run=" in page.url and seed_run not in page.url, 60, "the new run's page")
        run_id = page.url.split("run=")[1].split("&")[0]
        until(lambda: _epoch(runs_dir, run_id) >= 1, 180, "the first epoch to end (its checkpoint)")
        settle(page)
        _click(page, "Pause")
        until(lambda: _status(runs_dir, run_id) == "paused", 60, "the run to pause")
        page.wait_for_function("() => document.body.innerText.includes('paused')", timeout=30_000)
        held = _db(runs_dir, "SELECT MAX(step) FROM metrics WHERE run_id = ? AND key = 'train/loss'", run_id)[0][0]
        # 2. Lower its LR (×0.1, every group) and unfreeze the next block, while it is paused.
        settle(page)
        _click(page, "Apply")
        until(lambda: [k for k, *_ in _applied(runs_dir, run_id)] == ["pause", "lr"], 30, "the LR change")
        _click(page, "Unfreeze now")
        until(lambda: [k for k, *_ in _applied(runs_dir, run_id)] == ["pause", "lr", "unfreeze"], 30, "the unfreeze")
        time.sleep(1.0)
        assert _db(runs_dir, "SELECT MAX(step) FROM metrics WHERE run_id = ? AND key = 'train/loss'",
                   run_id)[0][0] == held, "a paused run trained on"
        assert "stage 2 of 3" in _applied(runs_dir, run_id)[2][2]
        page.reload()
        settle(page)
        until(lambda: {"LR ×0.1", "unfreeze next"} <= {t for m in _marks(page) for t in m.split(" · ")}, 30,
              "the marks of both changes on the charts")
        shot(page, "steer-paused")
    # 3. The app restarted: the run was interrupted with it. Resume it from the browser.
    with serve_app(runs_dir, runs_dir.parent / "streamlit-2.log") as (url, _):
        page.goto(f"{url}/runs?run={run_id}")
        settle(page)
        # (marked when the new app opens its run store, as its first page is drawn: a cold start imports first)
        until(lambda: _status(runs_dir, run_id) == "interrupted", 60, "the restarted app to mark the run interrupted")
        resume = page.get_by_role("button", name="Resume from epoch")
        until(lambda: resume.count() == 1, 30, "the Resume button")
        resume.click()
        until(lambda: _status(runs_dir, run_id) == "completed", 420, "the resumed run to complete")
        kinds = _applied(runs_dir, run_id)
        resumed_at = next(step for kind, step, _ in kinds if kind == "resume")
        assert [(k, s) for k, s, _ in kinds if k in ("lr", "unfreeze")] == [("lr", resumed_at), ("unfreeze", resumed_at)]
        lr = dict(_db(runs_dir, "SELECT step, value FROM metrics WHERE run_id = ? AND key = 'train/lr'", run_id))
        assert lr[resumed_at + 1] == pytest.approx(0.1 * lr[resumed_at])
        steps = [s for (s,) in _db(runs_dir, "SELECT step FROM metrics WHERE run_id = ? AND key = 'train/loss' "
                                             "ORDER BY step", run_id)]
        assert steps == list(range(1, len(steps) + 1)) and len(steps) == 120 * 7
        page.reload()
        settle(page)
        until(lambda: any("resumed from step" in m for m in _marks(page)), 30, "the resume mark")
        assert any("LR ×0.1" in m for m in _marks(page))
        shot(page, "steer-resumed")
        # 4. Export it with the two others as one zip.
        page.get_by_text("Share runs as a zip · import runs").click()
        settle(page)
        for (other,) in _db(runs_dir, "SELECT id FROM runs WHERE status = 'completed' AND id != ?", run_id):
            _choose(page, "Runs to share", other)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download 3 run(s) as a zip").click()
        bundle = tmp_path / "three-runs.zip"
        download.value.save_as(bundle)
        shot(page, "steer-export")
    # 5. A second, empty workbench imports the zip; its Compare page shows the three runs.
    fresh = tmp_path / "fresh" / "runs"
    with serve_app(fresh, tmp_path / "streamlit-fresh.log") as (url, _):
        page.goto(f"{url}/runs")
        settle(page)
        page.locator('input[type="file"]').set_input_files(str(bundle))
        until(lambda: len(_db(fresh, "SELECT id FROM runs")) == 3, 60, "the import")
        ids = [r for (r,) in _db(fresh, "SELECT id FROM runs WHERE origin IS NOT NULL")]
        assert run_id in ids and len(ids) == 3
        page.goto(f"{url}/compare?runs={','.join(ids)}")
        settle(page)
        traces = until(lambda: [t for t in charts(page).get("train/loss by run", []) if t["n"] > 0], 60, "curves")
        assert len(traces) == 3, traces
        assert any("LR ×0.1" in m for m in _marks(page)), "Compare marks the imported run's interventions"
        page.get_by_role("tab", name="Config diff").click()
        settle(page)
        shot(page, "steer-imported-compare")
