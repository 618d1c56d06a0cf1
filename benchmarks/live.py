"""Row 6 of `make bench`: the live loop in real Chromium (issue 11).

    python -m benchmarks.live [--quick]

The app runs as users run it (`streamlit run app.py`: engine worker processes) with its own runs
directory; Playwright drives Debian's Chromium. Measured, each in one run:

- watch: steps/s of a run while 3 tabs show its Runs page ÷ steps/s with no browser, for a mnist-cnn
  LoRA run on digits and a tiny-bert LoRA run on sms-spam. One long run per model; windows with and
  without the tabs alternate (none, tabs, none, tabs, …) so the ratio is not a run-to-run difference.
  Chromium runs as an idle-priority process (SCHED_IDLE, nice 19): in a class the browsers run on the
  students' machines, not the server's cores; what is measured is what serving the pages costs the run.
- stop: click Stop → the page shows "stopped" (median of 3), timed inside the browser.
- compare: a run ends (its `ended` time in the store) → the open Compare page shows "completed".
- pages: first load of every page for a new browser session, and toggle → preview on the Train page
  (PEFT method lora ↔ full) for every built-in model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM, CHROMIUM_ARGS, select, serve_app, settle, until  # noqa: E402

from benchmarks.common import median, reply  # noqa: E402

TOGGLE_MODELS = [("tiny-bert", "sms-spam"), ("mnist-cnn", "digits"), ("mlp", "diabetes"), ("minilm-l6", "sms-spam")]
PAGES = {"Home": "", "Train": "train", "Runs": "runs", "Compare": "compare", "Learn": "learn", "Data & Models": "data"}
# mnist-5k rather than digits: longer runs (a run about to end is followed by "Run again", next seed).
WATCH = {"mnist-cnn": ("mnist-5k", "mnist-cnn"), "tiny-bert": ("sms-spam", "tiny-bert")}
# JavaScript: is there an element whose own text is exactly `text`? (polled by the browser itself)
HAS_TEXT = """(text) => Array.from(document.querySelectorAll('span, p, div')).some(
  el => el.childElementCount === 0 && el.textContent.trim() === text)"""
METRIC = """(label) => { for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
  const l = m.querySelector('[data-testid="stMetricLabel"]');
  if (l && l.textContent.trim() === label) return m.querySelector('[data-testid="stMetricValue"]').textContent.trim(); }
  return null; }"""


# -- the run store, read directly ------------------------------------------------------------------------
def _db(runs: Path) -> sqlite3.Connection:
    return sqlite3.connect(runs / "workbench.db", timeout=30)


def _step(runs: Path, run_id: str) -> int:
    with _db(runs) as db:
        row = db.execute("SELECT MAX(step) FROM metrics WHERE run_id = ? AND key = 'train/loss'", (run_id,)).fetchone()
    return int(row[0] or 0)


def _run(runs: Path, run_id: str) -> dict[str, Any]:
    with _db(runs) as db:
        status, ended = db.execute("SELECT status, ended FROM runs WHERE id = ?", (run_id,)).fetchone()
    return {"status": status, "ended": ended}


def _newest(runs: Path) -> str:
    with _db(runs) as db:
        return db.execute("SELECT id FROM runs ORDER BY created DESC LIMIT 1").fetchone()[0]


# -- browser steps ---------------------------------------------------------------------------------------
def _context(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    ctx.set_default_timeout(120_000)
    return ctx


def _start_from_train(page, url: str, data: str, model: str, epochs: int) -> str:
    """Fill the Train page as a user does and press Start; returns the new run's id."""
    page.goto(f"{url}/train")
    settle(page)
    select(page, "Dataset", data)
    _model(page, model)
    field = page.locator('input[type="number"][aria-label="Epochs"]')
    field.fill(str(epochs))
    field.press("Enter")
    settle(page)
    page.locator(".st-key-train_start button").first.click()
    page.wait_for_url(re.compile(r"/runs\?run="), timeout=120_000)
    return re.search(r"run=([0-9a-f-]+)", page.url).group(1)


def _model(page, model: str) -> None:
    """Pick `model` unless the form already chose it (the only model of a modality is chosen for you)."""
    box = page.locator('input[aria-label="Model"]')
    try:  # the previous modality's box lingers for a moment after the dataset changed
        until(lambda: box.count() == 1 and model in box.input_value(), 5, "the model")
    except AssertionError:
        select(page, "Model", model)


def _window(runs: Path, run_id: str, seconds: float) -> float:
    """Steps per second of `run_id` over the next `seconds` (from the store's own step numbers)."""
    s0, t0 = _step(runs, run_id), time.perf_counter()
    time.sleep(seconds)
    if _run(runs, run_id)["status"] != "running":
        raise RuntimeError(f"run {run_id} ended inside a measurement window: make it longer")
    speed = (_step(runs, run_id) - s0) / (time.perf_counter() - t0)
    print(f"  window {seconds:.0f}s: {speed:.1f} steps/s", file=sys.stderr, flush=True)
    return speed


def _remaining_s(runs: Path, run_id: str, speed: float) -> float:
    with _db(runs) as db:
        progress = json.loads(db.execute("SELECT progress FROM runs WHERE id = ?", (run_id,)).fetchone()[0] or "{}")
    return (progress.get("total_steps", 0) - progress.get("step", 0)) / max(speed, 1e-9)


def _run_again(browser, url: str, runs: Path, run_id: str) -> str:
    """The same config, next seed, from the run's page (when the current run would end mid-window)."""
    ctx = _context(browser)
    page = ctx.new_page()
    page.goto(f"{url}/runs?run={run_id}")
    settle(page)
    page.locator(".st-key-runs_again button").first.click()
    new_id = until(lambda: _newest(runs) if _newest(runs) != run_id else None, 60, "the next run")
    ctx.close()
    until(lambda: _step(runs, new_id) > 20, 120, "the next run's first steps")
    return new_id


def watch(browser, url: str, runs: Path, model: str, *, rounds: int, seconds: float) -> dict[str, Any]:
    data, model_name = WATCH[model]
    ctx = _context(browser)
    run_id = _start_from_train(ctx.new_page(), url, data, model_name, epochs=200)
    ctx.close()  # no browser from here on
    until(lambda: _step(runs, run_id) > 20, 120, "the run's first steps")
    alone, watched, ids = [], [], [run_id]

    def fresh() -> str:  # a window (plus opening 3 tabs) must fit in what is left of the run
        speed = alone[-1] if alone else 100.0
        if _remaining_s(runs, ids[-1], speed) < 2 * seconds + 30:
            ids.append(_run_again(browser, url, runs, ids[-1]))
        return ids[-1]

    for _ in range(rounds):
        alone.append(_window(runs, fresh(), seconds))
        current = fresh()
        ctx = _context(browser)
        tabs = [ctx.new_page() for _ in range(3)]
        for tab in tabs:
            tab.goto(f"{url}/runs?run={current}")
        for tab in tabs:
            until(lambda t=tab: t.locator(".js-plotly-plot").count() >= 2, 90, "the Runs page's charts")
        watched.append(_window(runs, current, seconds))
        ctx.close()
    alone.append(_window(runs, fresh(), seconds))
    _stop_by_page(browser, url, ids[-1])
    return {"run_ids": ids, "alone_steps_s": alone, "watched_steps_s": watched,
            "ratio": median(watched) / median(alone), "window_s": seconds}


def _stop_by_page(browser, url: str, run_id: str) -> None:
    ctx = _context(browser)
    page = ctx.new_page()
    page.goto(f"{url}/runs?run={run_id}")
    settle(page)
    page.locator(".st-key-runs_stop button").first.click()
    page.wait_for_function(HAS_TEXT, arg="stopped", polling=50, timeout=60_000)
    ctx.close()


def stop_latency(browser, url: str, runs: Path, repeats: int) -> dict[str, Any]:
    """Click Stop on a training run's page → "stopped" on that page, timed in the browser; "Run again"
    (next seed) provides the next training run."""
    ctx = _context(browser)
    page = ctx.new_page()
    run_id = _start_from_train(page, url, *WATCH["mnist-cnn"], epochs=200)
    times, stopping_seen = [], []
    for i in range(repeats):
        until(lambda r=run_id: _step(runs, r) > 20, 120, "the run's first steps")
        settle(page)
        page.evaluate("""() => { window.__seen = [];
          new MutationObserver(() => { for (const el of document.querySelectorAll('span, p'))
            if (el.textContent.trim().startsWith('stopping')) window.__seen.push('stopping'); })
          .observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
        t0 = time.perf_counter()
        page.locator(".st-key-runs_stop button").first.click()
        page.wait_for_function(HAS_TEXT, arg="stopped", polling=50, timeout=60_000)
        times.append(time.perf_counter() - t0)
        stopping_seen.append(bool(page.evaluate("() => window.__seen.length > 0")))
        if i + 1 < repeats:
            settle(page)
            page.locator(".st-key-runs_again button").first.click()
            until(lambda r=run_id: _newest(runs) != r, 60, "the next run")
            run_id = _newest(runs)
            page.wait_for_url(re.compile(rf"run={run_id}"), timeout=60_000)
    ctx.close()
    return {"click_to_stopped_s": times, "median_s": median(times), "stopping_shown": stopping_seen}


def compare_flip(browser, url: str, runs: Path, repeats: int) -> dict[str, Any]:
    """A short run starts; Compare is opened on it at once; time from its end to "completed" shown."""
    ctx = _context(browser)
    page = ctx.new_page()
    lags = []
    for _ in range(repeats):
        run_id = _start_from_train(page, url, *WATCH["mnist-cnn"], epochs=3)
        page.goto(f"{url}/compare?runs={run_id}")
        page.wait_for_function("() => document.body.innerText.includes('✓ completed 1')", polling=50,
                               timeout=120_000)
        seen = time.time()
        ended = until(lambda r=run_id: _run(runs, r)["ended"], 30, "the run's end time")
        lags.append(seen - ended)
    ctx.close()
    return {"end_to_shown_s": lags, "median_s": median(lags)}


def pages(browser, url: str) -> dict[str, Any]:
    """First load of every page in a new session (twice: the first ever, then warm), and toggle → preview."""
    loads: dict[str, list[float]] = {}
    for _ in range(2):
        for name, path in PAGES.items():
            ctx = _context(browser)
            page = ctx.new_page()
            t0 = time.perf_counter()
            page.goto(f"{url}/{path}")
            page.wait_for_selector("h1", timeout=120_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", polling=50,
                                   timeout=120_000)
            loads.setdefault(name, []).append(time.perf_counter() - t0)
            ctx.close()
    toggles: dict[str, list[float]] = {}
    ctx = _context(browser)
    page = ctx.new_page()
    page.goto(f"{url}/train")
    settle(page)
    for model, data in TOGGLE_MODELS:
        select(page, "Dataset", data)
        _model(page, model)
        for method in ("full", "lora", "full", "lora"):  # ends on lora: the next model starts from it
            before = page.evaluate(METRIC, "Trainable parameters")
            t0 = time.perf_counter()
            box = page.locator('input[role="combobox"][aria-label="PEFT method"]')
            until(lambda b=box: b.count() == 1, 30, "one PEFT method box")
            box.click()
            box.fill(method)
            page.get_by_role("option", name=method, exact=True).click()
            page.wait_for_function(f"(b) => ({METRIC})('Trainable parameters') !== b", arg=before, polling=20,
                                   timeout=120_000)
            toggles.setdefault(model, []).append(time.perf_counter() - t0)
            settle(page)
    ctx.close()
    return {"first_load_s": {k: v[0] for k, v in loads.items()}, "warm_load_s": {k: v[1] for k, v in loads.items()},
            "toggle_s": toggles, "toggle_warm_median_s": {k: median(v[1:]) for k, v in toggles.items()}}


def run(quick: bool = False, parts: tuple[str, ...] = ("pages", "watch", "stop", "compare")) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    runs = Path(tempfile.mkdtemp(prefix="wb-bench-live-")) / "runs"
    out: dict[str, Any] = {"load_start": os.getloadavg()[0]}
    with serve_app(runs, runs.parent / "streamlit.log") as (url, _server), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(_nice_chromium(runs.parent)), args=CHROMIUM_ARGS)
        if "pages" in parts:
            out["pages"] = pages(browser, url)
        for model in WATCH if "watch" in parts else ():
            out[f"watch_{model}"] = watch(browser, url, runs, model, rounds=2 if quick else 5,
                                          seconds=8.0 if quick else 10.0)
        if "stop" in parts:
            out["stop"] = stop_latency(browser, url, runs, repeats=3)
        if "compare" in parts:
            out["compare"] = compare_flip(browser, url, runs, repeats=2 if quick else 3)
        browser.close()
    out["load_end"] = os.getloadavg()[0]
    return out


def _nice_chromium(folder: Path) -> Path:
    """A launcher that runs Chromium as SCHED_IDLE at nice 19 (its threads and renderers inherit it), so
    it only takes CPU nobody else wants, as browsers on other machines would: see the module docstring."""
    path = folder / "chromium-nice"
    path.write_text(f'#!/bin/sh\nexec chrt --idle 0 nice -n 19 {CHROMIUM} "$@"\n')
    path.chmod(0o755)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--toggle-models", default=",".join(m for m, _ in TOGGLE_MODELS))
    parser.add_argument("--only", default="pages,watch,stop,compare")
    args = parser.parse_args()
    TOGGLE_MODELS[:] = [(m, d) for m, d in TOGGLE_MODELS if m in args.toggle_models.split(",")]
    result = run(quick=args.quick, parts=tuple(args.only.split(",")))
    reply(row="live", **json.loads(json.dumps(result, default=float)))
