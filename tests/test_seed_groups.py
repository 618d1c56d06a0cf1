"""Seed groups: runs that differ only in seed fold into one group; one-factor pairs; replicates start as one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from workbench import seed_groups as sg
from workbench.config import TrainConfig
from workbench.errors import ConfigError
from workbench.runs import RunManager

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(model="mnist-cnn", data="digits", epochs=2, batch_size=16, limit_per_class=10)


def frame(*runs: tuple[dict, list[float]], prefix: str = "r") -> pd.DataFrame:
    """A runs frame as `RunStore.runs_frame` gives it: one row per (config, seed), test_accuracy per seed."""
    rows = []
    for n, (changes, accuracies) in enumerate(runs):
        for seed, accuracy in enumerate(accuracies):
            config = TrainConfig.from_dict({**BASE, **changes, "seed": seed})
            c = config.to_dict()
            rows.append({"id": f"{prefix}{n}-{seed}", "name": config.display_name(), "status": "completed",
                         "model": c["model"], "dataset": c["data"], "method": c["method"], "seed": seed,
                         "batch_size": c["batch_size"], "config": c, "test_accuracy": accuracy,
                         "test_loss": 1 - accuracy})
    return pd.DataFrame(rows)


GRID = frame(
    (dict(method="lora"), [0.90, 0.91, 0.92]),
    (dict(method="lora", method_options={"rank": 4}), [0.85, 0.86, 0.84]),
    (dict(method="full"), [0.93, 0.95, 0.94]),
    (dict(method="lora", lr_schedule="plateau"), [0.90, 0.92, 0.91]),
    (dict(method="full", hierarchical="bottom-up", lr_schedule="plateau"), [0.80, 0.82]),
)


def test_runs_that_differ_only_in_seed_name_and_tags_fold_into_one_group():
    runs = frame((dict(method="lora"), [0.9, 0.8, 0.85]))
    runs.loc[1, "name"] = "my own name"
    runs.at[2, "config"] = {**runs.at[2, "config"], "tags": ["homework"]}
    found = sg.groups(runs)
    assert len(found) == 1 and found[0].run_ids == ["r0-0", "r0-1", "r0-2"] and found[0].seeds == [0, 1, 2]
    assert found[0].stats("test_accuracy") == {"mean": pytest.approx(0.85), "std": pytest.approx(0.05), "n": 3}
    assert found[0].label.endswith("(3 seeds)")
    other = frame((dict(method="lora", epochs=3), [0.9]), prefix="x")
    assert len(sg.groups(pd.concat([runs, other], ignore_index=True))) == 2  # another setting: another group


def test_only_completed_runs_count_as_replicates():
    runs = frame((dict(method="lora"), [0.9, 0.8, 0.85]))
    runs.loc[2, "status"] = "stopped"
    group = sg.groups(runs)[0]
    assert len(group.run_ids) == 3 and group.stats("test_accuracy")["n"] == 2
    assert group.values("test_accuracy")[2] != group.values("test_accuracy")[2]  # NaN: trained less


def test_one_factor_pairs_on_a_hand_made_runs_frame():
    found = sg.groups(GRID)
    assert [len(g.run_ids) for g in found] == [3, 3, 3, 3, 2]
    pairs = {(p.a.run_ids[0][:2], p.b.run_ids[0][:2]): (p.setting, p.values) for p in sg.one_factor_pairs(found)}
    assert pairs == {
        ("r0", "r1"): ("method_options.rank", (8, 4)),  # the same method, one option apart
        ("r0", "r2"): ("method", ("lora", "full")),  # a method with its own options is one setting
        ("r0", "r3"): ("lr_schedule", ("constant", "plateau")),
        ("r1", "r2"): ("method", ("lora", "full")),  # lora r4 vs full: the rank comes with the method
    }  # r4 differs from r2 in two settings (hierarchical, lr_schedule), r1 from r3 too (rank, lr_schedule)


def test_method_pairs_count_the_method_once_but_not_other_settings():
    found = sg.groups(GRID)
    assert sg.differences(found[1].settings, found[2].settings) == ["method"]
    assert sorted(sg.differences(found[2].settings, found[4].settings)) == ["hierarchical", "lr_schedule"]
    assert sorted(sg.differences(found[1].settings, found[3].settings)) == ["lr_schedule", "method_options.rank"]


def test_pair_verdicts_name_the_sides_by_the_setting():
    pairs = sg.one_factor_pairs(sg.groups(GRID))
    by_setting = {p.setting: p for p in reversed(pairs)}  # the first pair of each setting
    rank = sg.pair_verdict(by_setting["method_options.rank"], "test_accuracy")
    assert rank.significant and rank.text.startswith("rank=8 beats rank=4 by +0.060 accuracy")
    method = sg.pair_verdict(by_setting["method"], "test_loss")  # lower is better: full's loss is lower
    assert method.winner == "full" and method.text.startswith("full beats lora r8 by -0.030 loss")
    schedule = sg.pair_verdict(by_setting["lr_schedule"], "test_accuracy")
    assert schedule.significant is False and schedule.text.startswith("no clear difference between "
                                                                      "lr_schedule=constant and lr_schedule=plateau")


def test_seed_key_and_labels_are_the_compare_charts():
    a, b = GRID.iloc[0].to_dict(), GRID.iloc[1].to_dict()
    assert sg.seed_key(a) == sg.seed_key(b)
    assert sg.group_label(["lora r8 · mnist-cnn/digits · s10", "lora r8 · mnist-cnn/digits · s11"]) == \
        "lora r8 · mnist-cnn/digits (2 seeds)"
    assert sg.headline(["val_accuracy", "test_loss", "test_accuracy"]) == "test_accuracy"
    assert sg.headline(["best_val_loss", "test_mae"]) == "test_mae"


@pytest.mark.parametrize("text, message", [
    ("0,x", "seeds must be comma-separated whole numbers"), ("", "seeds must be"), ("1,-2", "seeds must be"),
    ("0,1,0", "Seed 0 is given twice"), (",".join(map(str, range(51))), "between 1 and 50 seeds"),
])
def test_bad_seeds_are_refused_with_the_value(text, message):
    with pytest.raises(ConfigError, match=message) as err:
        sg.parse_seeds(text)
    assert str(err.value).endswith(f"Received: seeds={text!r}") and "\n" not in str(err.value)


def test_replicates_keep_everything_but_the_seed():
    base = TrainConfig.from_dict({**BASE, "method": "lora", "name": "my run", "tags": ["hw"]})
    configs = sg.replicates(base, [3, 7])
    assert [c.seed for c in configs] == [3, 7] and [c.name for c in configs] == ["my run · s3", "my run · s7"]
    assert {k: v for k, v in configs[1].to_dict().items() if k not in ("seed", "name")} == \
        {k: v for k, v in base.to_dict().items() if k not in ("seed", "name")}
    assert sg.replicates(base, [5])[0].name == "my run"  # one run keeps its name as given
    long = TrainConfig.from_dict({**BASE, "name": "x" * 80})
    assert all(len(c.name) <= 80 for c in sg.replicates(long, [10, 11]))


def test_group_report_counts_completed_runs_only():
    runs = [{"run_id": f"r{i}", "name": f"lora · mnist-cnn/digits · s{i}", "seed": i, "status": status,
             "test_accuracy": acc, "recorded": True}
            for i, (status, acc) in enumerate([("completed", 0.8), ("completed", 0.9), ("stopped", 0.1)])]
    report = sg.group_report(runs, stopped=True)
    assert (report["status"], report["metric"], report["n"]) == ("stopped", "test_accuracy", 2)
    assert report["values"] == [0.8, 0.9, None] and report["mean"] == pytest.approx(0.85)
    assert report["text"] == "group lora · mnist-cnn/digits (3 seeds): stopped, test_accuracy 0.8500 ± 0.0707 over 2 seeds"
    assert sg.group_report(runs[:2])["status"] == "completed"
    assert sg.group_report([{**runs[0], "status": "failed"}, runs[1]])["status"] == "failed"
    assert sg.run_line(runs[0]) == "run r0 seed 0: completed · test_accuracy 0.8000"


def _render_script() -> None:
    import os

    import pandas as pd  # noqa: F811 - AppTest runs this function's body as its own script

    from pages._seed_groups import render
    from workbench.runs import RunStore

    store = RunStore(os.environ["SEED_GROUPS_RUNS"]) if os.environ.get("SEED_GROUPS_RUNS") else None
    render(pd.read_pickle(os.environ["SEED_GROUPS_FRAME"]), store)


@pytest.fixture
def render_page(tmp_path, monkeypatch):
    def run(runs: pd.DataFrame) -> AppTest:
        path = tmp_path / "runs.pkl"
        runs.to_pickle(path)
        monkeypatch.setenv("SEED_GROUPS_FRAME", str(path))
        monkeypatch.chdir(ROOT)  # `pages` is importable from the repository root, as under `streamlit run`
        monkeypatch.syspath_prepend(str(ROOT))
        at = AppTest.from_function(_render_script, default_timeout=60).run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return run


def test_page_gives_the_verdict_for_two_groups(render_page):
    at = render_page(frame((dict(method="lora"), [0.90, 0.91, 0.92]),
                           (dict(method="lora", method_options={"rank": 4}), [0.85, 0.86, 0.84])))
    assert [s.value for s in at.success] == [
        "rank=8 beats rank=4 by +0.060 accuracy (0.910 vs 0.850; 95 % CI +0.037…+0.083, p = 0.0018, 3 vs 3 seeds)"]
    table = at.dataframe[0].value
    assert list(table["runs"]) == [3, 3] and table.iloc[0, 1] == "0.910 ± 0.010 (n=3)"
    at.selectbox(key="seed_groups_metric").set_value("test_loss").run()
    assert at.success[0].value.startswith("rank=8 beats rank=4 by -0.060 loss")


def test_page_lists_one_factor_pairs_for_more_groups(render_page):
    at = render_page(GRID)
    pairs = at.dataframe[1].value
    assert list(pairs["setting"]) == ["rank", "method", "lr_schedule", "method"]
    assert list(pairs["values"]) == ["8 vs 4", "lora r8 vs full", "constant vs plateau", "lora r4 vs full"]
    assert list(pairs["result"]) == ["rank=8 is better", "full is better", "no clear difference", "full is better"]
    assert pairs["verdict"].iloc[0].startswith("rank=8 beats rank=4")
    assert pairs["verdict"].iloc[2].startswith("no clear difference")
    figure = at.get("plotly_chart")[0].proto.spec
    assert all(label in figure for label in ("lora r4", "(2 seeds)", "per seed"))  # every group drawn


def test_page_says_how_to_get_replicates_when_every_run_is_alone(render_page):
    at = render_page(frame((dict(method="lora"), [0.9]), (dict(method="full"), [0.93])))
    assert any("Replicates" in c.value for c in at.caption)
    assert at.info[0].value == "no verdict: needs ≥ 2 seeds per side (lora r8 has 1, full has 1)"


def test_page_offers_the_unselected_seeds_of_a_selected_group(render_page, store, monkeypatch):
    every = frame((dict(method="lora"), [0.90, 0.91, 0.92]), (dict(method="full"), [0.95, 0.93]))
    ids = []
    for row in every.to_dict("records"):
        ids.append(store.create_run(row["config"], row["name"], status="completed"))
        store.update_run(ids[-1], final_metrics={"test_accuracy": row["test_accuracy"]})
    other = store.create_run(every.iloc[0]["config"], "stopped one", status="stopped")  # not a replicate
    monkeypatch.setenv("SEED_GROUPS_RUNS", str(store.runs_dir))
    at = render_page(store.runs_frame([ids[0], ids[3]]))
    button = at.button(key="seed_groups_add")
    assert button.label == "Add the other seeds of these configurations (3 runs)"
    at.query_params["runs"] = f"{ids[0]},{ids[3]}"
    button.click().run()
    assert set(at.query_params["runs"].split(",")) == set(ids) and other not in at.query_params["runs"]


def test_train_page_replicates_start_one_group_and_open_compare(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("WORKBENCH_EXPLAIN", "0")  # the explain parts are not what this test is about
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page("pages/train.py")
    at.run()
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    at.number_input(key="train_limit").set_value(5)
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_replicates").set_value(2)
    at.select_slider(key="train_batch").set_value(8).run()
    assert at.button(key="train_start").label == "Start 2 runs"
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ids = at.query_params["runs"].split(",")
    manager = RunManager.get(runs_dir)
    try:
        assert at.title[0].value == "Compare" and len(ids) == 2
        assert [manager.store.get_run(i).config["seed"] for i in ids] == [0, 1]
        assert [len(g.run_ids) for g in sg.groups(manager.store.runs_frame(ids))] == [2]
    finally:
        for run_id in ids:
            manager.stop(run_id)
            manager.wait(run_id, 120)
        st.cache_resource.clear()
        st.cache_data.clear()
