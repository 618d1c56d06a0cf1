"""Explaining runs in a real browser: a finished run's change map, retention, confusion matrix,
misclassified examples and try-it box on the Runs page; seed groups with a significance verdict and
the example diff on the Compare page. Screenshots land in artifacts/screenshots/explain-*.png.

Four small real runs (mnist-cnn → digits, LoRA and full, seeds 0 and 1) are trained first, in this
process, into the runs directory the app then serves.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import CHROMIUM, charts, chromium_page, serve_app, settle, shot, until

pytestmark = pytest.mark.e2e
TINY = dict(model="mnist-cnn", data="digits", limit_per_class=8, epochs=2, batch_size=16, export_model=False)


@pytest.fixture(scope="module")
def explained_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    from workbench.config import TrainConfig
    from workbench.runs import RunManager

    runs = tmp_path_factory.mktemp("explain") / "runs"
    manager = RunManager(runs, executor="thread")
    ids = {}
    for method in ("full", "lora"):
        for seed in (0, 1):
            run_id = manager.start(TrainConfig(**TINY, method=method, seed=seed))
            assert manager.wait(run_id, timeout=300) == "completed", manager.store.get_run(run_id).error
            ids[f"{method}{seed}"] = run_id
    manager.close()
    with serve_app(runs, runs.parent / "streamlit.log") as (url, _):
        yield url, ids


@pytest.fixture(scope="module")
def page(explained_app: tuple[str, dict[str, str]]) -> Iterator[Any]:
    with chromium_page() as tab:
        yield tab


def drawn(page: Any, title_start: str) -> int:
    """Points drawn in the charts whose title starts with `title_start` (0 when there is none yet)."""
    return sum(t["n"] for title, traces in charts(page).items() if title.startswith(title_start) for t in traces)


def open_tab(page: Any, label: str) -> None:
    page.get_by_role("tab", name=label).click()
    settle(page)


def digit_png() -> bytes:
    """A digit as a user would upload it: a test image of `digits`, 8× larger, dark ink on white."""
    from PIL import Image

    from workbench import data as wdata

    image = np.asarray(wdata.load("digits").x[0], dtype="float32").reshape(28, 28)
    ink = (255 * (1 - image / max(float(image.max()), 1e-6))).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(ink).resize((224, 224)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_finished_run_explains_itself(explained_app: tuple[str, dict[str, str]], page: Any, tmp_path: Path) -> None:
    url, ids = explained_app
    page.goto(f"{url}/runs?run={ids['full0']}")
    settle(page)
    page.get_by_text("Explain this run", exact=True).wait_for()
    assert page.get_by_text("source kept", exact=False).count() > 0, "no retention line"

    open_tab(page, "What changed")
    until(lambda: drawn(page, "What changed where") > 0, 30, "the change map")
    shot(page, "explain-runs-change-map")

    open_tab(page, "Source kept")
    open_tab(page, "Predictions")
    until(lambda: drawn(page, "Confusion matrix") > 0, 30, "the confusion matrix")
    page.get_by_text("Misclassified test examples", exact=False).wait_for()
    until(lambda: page.locator('[data-testid="stImage"] img').count() > 0
          or page.get_by_text("No misclassified", exact=False).count() > 0, 30, "the misclassified examples")
    shot(page, "explain-runs-predictions")

    open_tab(page, "Try it")
    upload = tmp_path / "digit.png"
    upload.write_bytes(digit_png())
    page.get_by_label("A picture of one digit", exact=False).locator('input[type="file"]').set_input_files(str(upload))
    settle(page)
    page.get_by_role("button", name="Predict").click()
    settle(page)
    try:
        until(lambda: drawn(page, "What each model predicts") > 0, 60, "the try-it probabilities")
    finally:
        shot(page, "explain-runs-try-it")


def test_compare_says_whether_a_gap_is_real_and_which_examples_flipped(
        explained_app: tuple[str, dict[str, str]], page: Any) -> None:
    url, ids = explained_app
    page.goto(f"{url}/compare?runs={','.join(ids.values())}")
    settle(page)
    page.get_by_text("Is the difference real?", exact=True).wait_for()
    verdict = page.get_by_text("2 vs 2 seeds", exact=False)
    try:
        until(lambda: verdict.count() > 0, 30, "a significance verdict on the two seed groups")
        assert page.get_by_text("within seed noise", exact=False).count() + page.get_by_text(
            " beats ", exact=False).count() > 0, "the verdict says neither a win nor noise"
    finally:
        shot(page, "explain-compare")
    open_tab(page, "Examples that flipped")
    try:
        until(lambda: drawn(page, "Confusion difference") > 0, 30, "the confusion difference")
    finally:
        shot(page, "explain-compare-examples")
    open_tab(page, "What changed where")
    until(lambda: drawn(page, "What changed where") > 0, 30, "the two change maps")
    shot(page, "explain-compare-change-maps")
