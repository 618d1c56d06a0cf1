"""The sweep UI under Streamlit's AppTest: the Train page starts a small grid sweep (lr × rank, 4 tiny
runs), Compare shows it live and finished (status line, parallel coordinates, trials table best first),
and "the best configuration with N more seeds" starts runs. Runs train in threads of this process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import streamlit as st
from conftest import small_image_config
from streamlit.testing.v1 import AppTest

from workbench.runs import RunManager

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(path))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield path
    from workbench.sweeps import list_sweeps, stop_sweep

    manager = RunManager.get(path)
    for sweep in list_sweeps(manager.store):  # never leave a sweep starting runs into a deleted folder
        if sweep.status == "running":
            stop_sweep(manager, sweep.id)
    for run_id in manager.active():
        manager.stop(run_id)
        manager.wait(run_id, 120)
    st.cache_resource.clear()
    st.cache_data.clear()


def _open(page: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page(page)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _text(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "success", "warning", "error", "info")
                     for e in at.get(kind))


def _parcoords(at: AppTest) -> dict:
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    found = [f for f in figs if f["data"] and f["data"][0].get("type") == "parcoords"]
    assert found, [f["layout"].get("title", {}).get("text") for f in figs]
    return found[0]


def _wait_sweep(store, sweep_id: str, timeout: float = TIMEOUT) -> str:
    from workbench.sweeps import get_sweep

    deadline = time.time() + timeout
    while time.time() < deadline:
        status = get_sweep(store, sweep_id).status
        if status != "running":
            return status
        time.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} still running after {timeout}s")


def test_train_page_starts_a_grid_sweep_and_compare_shows_it(runs_dir: Path) -> None:
    from workbench.sweeps import sweep_frame

    at = _open("pages/train.py")
    at.selectbox(key="train_data").set_value("digits").run()
    assert at.selectbox(key="train_model_image").value == "mnist-cnn"
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_limit").set_value(5)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "sweep_params" in [m.key for m in at.multiselect]
    at.multiselect(key="sweep_params").set_value(["lr", "method_options.rank"]).run()
    at.multiselect(key="sweep_v_lr").set_value([1e-3, 1e-2])
    at.text_input(key="sweep_v_method_options.rank").input("2, 4")
    at.text_input(key="sweep_name").input("lr x rank")
    at.run()
    assert "grid: 4 runs" in _text(at)
    assert at.button(key="sweep_start").label == "Start sweep (4 runs)"
    at.button(key="sweep_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    sweep_id = at.session_state["sweep_started"]
    assert "started" in _text(at)

    live = _open("pages/compare.py", sweep=sweep_id)  # while it runs
    assert live.selectbox(key="compare_sweep").value == sweep_id
    assert "**running**" in _text(live) and "refreshes every" in _text(live)

    store = RunManager.get(runs_dir).store
    assert _wait_sweep(store, sweep_id) == "completed"
    frame = sweep_frame(store, sweep_id)
    assert len(frame) == 4 and set(frame["state"]) == {"complete"}

    done = _open("pages/compare.py", sweep=sweep_id)
    text = _text(done)
    assert "**completed** · 4 trials of 4 started: 4 complete" in text and "refreshes" not in text
    fig = _parcoords(done)
    labels = [d["label"] for d in fig["data"][0]["dimensions"]]
    assert labels == ["lr (log)", "method_options.rank", "val_accuracy"]
    table = next(d.value for d in done.dataframe if "trial" in d.value.columns)
    assert len(table) == 4 and list(table["value"]) == sorted(table["value"], reverse=True)
    assert {"lr", "method_options.rank", "state", "run"} <= set(table.columns)

    done.number_input(key="sweep_more_seeds").set_value(2)
    done.button(key="sweep_best_start").click().run()
    assert not done.exception and not done.error, [e.value for e in done.error]
    started = done.session_state["sweep_best_runs"]
    assert len(started) == 3 and started[0] == table["run_id"].iloc[0]
    manager = RunManager.get(runs_dir)
    seeds = sorted(manager.store.get_run(r).config["seed"] for r in started[1:])
    assert seeds == [1, 2]
    for run_id in started[1:]:
        manager.stop(run_id)


def test_sweep_form_explains_what_it_cannot_start(runs_dir: Path) -> None:
    at = _open("pages/train.py")
    at.selectbox(key="train_data").set_value("digits").run()
    at.multiselect(key="sweep_params").set_value(["method_options.rank"]).run()
    at.text_input(key="sweep_v_method_options.rank").input("2 .. 8").run()  # a range needs random search
    assert any("random search" in str(w.value) for w in at.warning)
    assert at.button(key="sweep_start").disabled
    at.segmented_control(key="sweep_search").set_value("random").run()
    at.number_input(key="sweep_budget_random").set_value(3).run()
    assert not at.warning and not at.button(key="sweep_start").disabled
    assert "random search: 3 runs drawn from the ranges" in _text(at)


def test_compare_stops_a_running_sweep_and_remembers_the_pick(runs_dir: Path) -> None:
    from workbench.sweeps import SweepSpec, get_sweep, start_sweep

    manager = RunManager.get(runs_dir)
    base = small_image_config(epochs=30, limit_per_class=5, export_model=False).to_dict()
    sweep_id = start_sweep(manager, SweepSpec(base=base, params={"seed": [0, 1, 2]}, name="long"))
    at = _open("pages/compare.py", sweep=sweep_id)
    assert "**running** ·" in _text(at)
    at.button(key="sweep_stop").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert _wait_sweep(manager.store, sweep_id) == "stopped"
    assert get_sweep(manager.store, sweep_id).status == "stopped"
    at.switch_page("pages/runs.py").run()
    at.switch_page("pages/compare.py").run()  # back without the URL parameter: the sweep is still picked
    assert at.selectbox(key="compare_sweep").value == sweep_id
    assert "**stopped**" in _text(at) and "sweep_stop" not in [b.key for b in at.button]
