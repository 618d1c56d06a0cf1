"""Sweeps (`workbench.sweeps`, `workbench sweep`): real runs of the tiny image config, thread executor.

A grid runs each declared combination once; a random search draws `budget` values inside the declared
choices and ranges, the same ones for the same seed; successive halving stops weak trials early; a
trial that fails or is interrupted ends that trial only; a sweep can be stopped; bad specs and flags
are refused in one line before anything starts.
"""

from __future__ import annotations

import itertools
import json
import math
import time

import pytest
from conftest import small_image_config

from workbench.errors import ConfigError, WorkbenchError
from workbench.sweeps import (
    SWEEPABLE,
    SweepSpec,
    best_config,
    get_sweep,
    list_sweeps,
    run_sweep,
    start_best_with_seeds,
    start_sweep,
    stop_sweep,
    sweep_frame,
    wait_sweep,
)


def _base(**overrides):
    return small_image_config(export_model=False, **overrides).to_dict()


@pytest.fixture
def manager(runs_dir):
    from workbench.runs import RunManager

    manager = RunManager(runs_dir)
    yield manager
    for sweep in list_sweeps(manager.store):
        if sweep.status == "running":
            stop_sweep(manager, sweep.id)
            wait_sweep(sweep.id, 60)
    for run_id in manager.active():
        manager.stop(run_id)
        manager.wait(run_id, 60)


@pytest.mark.slow
def test_a_grid_runs_each_combination_once_and_reads_back(manager):
    spec = SweepSpec(base=_base(), params={"lr": [1e-2, 3e-3], "method_options.rank": [2, 4]}, name="lr x rank")
    assert spec.budget == 4
    sweep_id = run_sweep(manager, spec)
    assert sweep_id.startswith("sweep-")

    record = get_sweep(manager.store, sweep_id)
    assert record.status == "completed" and record.name == "lr x rank" and record.error is None
    assert record.spec["params"] == {"lr": [1e-2, 3e-3], "method_options.rank": [2, 4]}
    frame = sweep_frame(manager.store, sweep_id)
    assert list(frame.columns) == ["trial", "run_id", "state", "status", "lr", "method_options.rank", "value",
                                   "epochs_done"]
    assert set(frame.state) == {"complete"} and set(frame.status) == {"completed"}
    pairs = sorted(zip(frame["lr"], frame["method_options.rank"], strict=True))
    assert pairs == sorted(itertools.product([1e-2, 3e-3], [2, 4]))  # the cartesian product, each once
    assert list(frame.value) == sorted(frame.value, reverse=True) and frame.value.notna().all()
    assert set(frame.epochs_done) == {1} and sorted(frame.trial) == [0, 1, 2, 3]
    assert record.best_run_id == frame.run_id[0]

    for _, row in frame.iterrows():  # each trial is an ordinary run with the trial's values, labelled
        run = manager.store.get_run(row["run_id"])
        assert run.config["lr"] == row["lr"] and run.config["method_options"]["rank"] == row["method_options.rank"]
        assert f"sweep:{sweep_id}" in run.config["tags"] and f"trial:{row['trial']}" in run.config["tags"]
        assert run.name.startswith(f"lr x rank #{row['trial']} · ")
        assert run.final_metrics["val_accuracy"] == pytest.approx(row["value"])

    best = best_config(manager.store, sweep_id)
    stored = manager.store.get_run(frame.run_id[0]).config
    assert best == {**stored, "name": None, "tags": []}

    started = start_best_with_seeds(manager, sweep_id, [1, 2])
    assert len(started) == 2
    for seed, run_id in zip([1, 2], started, strict=True):
        config = manager.store.get_run(run_id).config
        assert config["seed"] == seed and config["lr"] == best["lr"]
        assert config["tags"] == [f"sweep-best:{sweep_id}"]
        manager.stop(run_id)

    later = run_sweep(manager, SweepSpec(base=_base(), params={"seed": [5]}))
    assert [s.id for s in list_sweeps(manager.store)] == [later, sweep_id]  # newest first


def test_random_search_draws_budget_values_inside_the_declared_space_reproducibly(manager):
    params = {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "rank": [2, 4, 8], "batch_size": {"low": 8, "high": 32}}
    spec = SweepSpec(base=_base(), params=params, search="random", budget=6, seed=7)
    planned = [values for values, _ in spec.trial_configs()]
    assert len(planned) == 6
    for values in planned:
        assert 1e-4 <= values["lr"] <= 1e-1 and values["rank"] in (2, 4, 8)
        assert isinstance(values["batch_size"], int) and 8 <= values["batch_size"] <= 32
    assert planned == [v for v, _ in SweepSpec(base=_base(), params=params, search="random", budget=6,
                                               seed=7).trial_configs()]
    other = [v for v, _ in SweepSpec(base=_base(), params=params, search="random", budget=6, seed=8).trial_configs()]
    assert other != planned

    small = SweepSpec(base=_base(), params={"lr": {"low": 1e-3, "high": 1e-2}}, search="random", budget=2, seed=3)
    sweep_id = run_sweep(manager, small)
    frame = sweep_frame(manager.store, sweep_id).sort_values("trial")
    assert list(frame.lr) == [v["lr"] for v, _ in small.trial_configs()]  # what ran is what was planned
    assert set(frame.state) == {"complete"}


def test_grid_plan_and_budget():
    spec = SweepSpec(base=_base(), params={"share": ["off", "tied"], "hierarchical": ["off", "bottom-up"],
                                           "seed": [0, 1]})
    planned = [v for v, _ in spec.trial_configs()]
    assert spec.budget == 8 and len(planned) == 8
    assert sorted(tuple(v.values()) for v in planned) == sorted(
        itertools.product(["off", "tied"], ["off", "bottom-up"], [0, 1]))
    assert SweepSpec(base=_base(), params={"seed": [0, 1, 2]}, budget=2).budget == 2
    assert SweepSpec(base=_base(), params={"seed": [0, 1, 2]}, budget=10).budget == 3  # never more than the grid
    assert SweepSpec(base=_base(), params={"seed": [0]}, metric="val_loss").resolved_direction() == "minimize"
    assert {"lr", "method_options.rank", "share", "hierarchical", "seed", "lr_schedule"} <= set(SWEEPABLE)


@pytest.mark.slow
def test_halving_stops_weak_trials_early(manager):
    epochs = 16  # ~1 s of training: several of the sweep's polls land inside each trial
    spec = SweepSpec(base=_base(epochs=epochs), params={"lr": [1e-2, 1.0, 1e-7]}, halving=True)
    seen = []
    sweep_id = run_sweep(manager, spec, on_trial=seen.append)
    frame = sweep_frame(manager.store, sweep_id)
    pruned = frame[frame.state == "pruned"]
    assert len(pruned) >= 1, frame.to_string()
    assert (pruned.epochs_done < epochs).all() and set(pruned.status) == {"stopped"}
    assert frame.state[0] == "complete" and frame.lr[0] == 1e-2 and frame.epochs_done[0] == epochs
    assert sorted(r.trial for r in seen) == [0, 1, 2]
    assert get_sweep(manager.store, sweep_id).status == "completed"


def test_a_failed_or_interrupted_trial_does_not_stop_the_sweep(manager, monkeypatch):
    from workbench.runs import manager as manager_module
    from workbench.runs.execute import Outcome, record_outcome

    real = manager_module.execute

    def execute(store, run_id, config, *args, **kwargs):  # a worker that dies under two of the trials
        if config.lr == 2e-2:
            return record_outcome(store, run_id, Outcome("failed", "the worker died (simulated)"))
        if config.lr == 3e-2:
            return record_outcome(store, run_id, Outcome("interrupted", "SIGKILL (simulated)"))
        return real(store, run_id, config, *args, **kwargs)

    monkeypatch.setattr(manager_module, "execute", execute)
    sweep_id = run_sweep(manager, SweepSpec(base=_base(), params={"lr": [2e-2, 3e-2, 1e-2]}))
    frame = sweep_frame(manager.store, sweep_id)
    assert get_sweep(manager.store, sweep_id).status == "completed"
    states = dict(zip(frame.lr, frame.state, strict=True))
    assert states == {2e-2: "failed", 3e-2: "failed", 1e-2: "complete"}
    assert frame.lr[0] == 1e-2 and math.isnan(frame.value[2])
    assert best_config(manager.store, sweep_id)["lr"] == 1e-2


def test_stop_sweep_stops_the_running_trial_and_starts_no_more(manager):
    sweep_id = start_sweep(manager, SweepSpec(base=_base(epochs=200), params={"lr": [1e-2, 2e-2, 3e-2]}))
    deadline = time.time() + 60
    while time.time() < deadline:
        frame = sweep_frame(manager.store, sweep_id)
        if len(frame) and frame.status[0] == "running":
            break
        time.sleep(0.2)
    stop_sweep(manager, sweep_id)
    assert wait_sweep(sweep_id, 60)
    record = get_sweep(manager.store, sweep_id)
    frame = sweep_frame(manager.store, sweep_id)
    assert record.status == "stopped" and len(frame) == 1
    assert frame.state[0] == "stopped" and frame.status[0] == "stopped"
    with pytest.raises(WorkbenchError, match="No sweep"):
        stop_sweep(manager, "sweep-20200101-000000-abcdef")
    with pytest.raises(WorkbenchError, match="Not a sweep id"):
        get_sweep(manager.store, "../etc")


def test_a_sweep_whose_process_is_gone_reads_interrupted(store):
    from workbench.sweeps import records

    sweep_id = records.create(store, {"params": {"lr": [1e-2]}, "metric": "val_accuracy"}, None)
    assert get_sweep(store, sweep_id).status == "running"
    with store._write() as conn:
        conn.execute("UPDATE sweeps SET owner_pid = ?, owner_start = ? WHERE id = ?", (2**22 + 12345, "1", sweep_id))
    record = get_sweep(store, sweep_id)
    assert record.status == "interrupted" and "process" in record.error


@pytest.mark.parametrize(("changes", "expected"), [
    ({"params": {}}, "at least one setting"),
    ({"params": {"rnak": [2, 4]}}, "did you mean 'rank'"),
    ({"params": {"tags": [["a"]]}}, "cannot be swept"),
    ({"params": {"lr": []}}, "non-empty list"),
    ({"params": {"lr": [1e-3, 1e-3]}}, "twice"),
    ({"params": {"lr": {"low": 1e-4, "high": 1e-2}}}, "search='random'"),
    ({"params": {"lr": {"low": 1e-2, "high": 1e-4}}, "search": "random", "budget": 2}, "low < high"),
    ({"params": {"lr": {"low": 0, "high": 1, "log": True}}, "search": "random", "budget": 2}, "low > 0"),
    ({"params": {"lr": [1e-3]}, "search": "random"}, "needs a budget"),
    ({"params": {"lr": [1e-3]}, "search": "bayes"}, "search must be"),
    ({"params": {"lr": [1e-3]}, "metric": "accuracy"}, "metric must be"),
    ({"params": {"lr": [1e-3]}, "metric": "train_loss", "halving": True}, "per epoch"),
    ({"params": {"lr": [1e-3]}, "budget": 0}, "budget must be"),
    ({"params": {"lr": [1e-3]}, "parallel": 0}, "parallel must be"),
    ({"params": {"rank": [0, 4]}}, "rank=0 cannot run"),
    ({"params": {"method": ["ia3", "lora"], "rank": [8]}}, "has no option 'rank'"),
    ({"params": {"lr": ["fast"]}}, "lr must be a number"),
])
def test_bad_specs_are_refused_in_one_line(manager, changes, expected):
    spec = {"base": _base(), **changes}
    with pytest.raises(ConfigError) as refused:
        start_sweep(manager, spec)
    message = str(refused.value)
    assert expected in message and "\n" not in message and "Received:" in message, message
    assert list_sweeps(manager.store) == []


def _cli(*argv):
    from workbench.cli import main

    return main(list(argv))


TINY = ("--model", "mnist-cnn", "--data", "digits", "--method", "lora", "--epochs", "1", "--batch-size", "16",
        "--limit-per-class", "10", "--no-export-model")


def test_cli_runs_a_sweep_prints_each_trial_and_the_table(runs_dir, capsys):
    assert _cli("--runs-dir", str(runs_dir), "sweep", *TINY, "--grid", "lr=1e-2,3e-3", "--grid", "rank=2",
                "--sweep-name", "cli grid") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert sum(line.startswith("trial ") and " complete · val_accuracy " in line for line in lines) == 2
    assert any(line.split()[:4] == ["trial", "run_id", "state", "status"] for line in lines)
    assert "best: run " in out and "workbench sweeps best sweep-" in out

    assert _cli("--runs-dir", str(runs_dir), "sweeps", "list", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["status"] == "completed" and listed["name"] == "cli grid"
    assert _cli("--runs-dir", str(runs_dir), "sweeps", "show", listed["id"][6:16], "--json") == 0
    shown = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert shown["best_run_id"] == listed["best_run_id"] and len(shown["trials"]) == 2
    assert _cli("--runs-dir", str(runs_dir), "sweeps", "stop", listed["id"]) == 0  # (already ended: nothing to do)


@pytest.mark.parametrize(("argv", "expected"), [
    (("--grid", "lr"), "--grid takes NAME=VALUES"),
    (("--grid", "lr=fast,slow"), "lr takes numbers"),
    (("--grid", "rnak=2,4"), "did you mean 'rank'"),
    (("--range", "lr=1e-4:1e-2"), "needs a budget"),
    (("--range", "lr=1e-4"), "LOW:HIGH"),
    (("--grid", "lr=1e-3", "--search", "grid", "--range", "rank=2:8"), "ranges need search='random'"),
    (("--grid", "lr=1e-3", "--budget", "many"), "--budget takes a whole number"),
    (("--grid", "lr=1e-3", "--ray-address", "auto"), "--ray-address applies to --executor ray"),
    ((), "Give the settings to sweep"),
])
def test_cli_refuses_bad_sweeps_in_one_line(runs_dir, capsys, argv, expected):
    assert _cli("--runs-dir", str(runs_dir), "sweep", *TINY, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err, err


def test_cli_sweeps_best_starts_more_seeds_and_refuses_unknown_ids(runs_dir, capsys):
    assert _cli("--runs-dir", str(runs_dir), "sweeps", "show", "deadbeef") == 2
    assert "(no run store there)" in capsys.readouterr().err
    assert _cli("--runs-dir", str(runs_dir), "sweep", *TINY, "--grid", "lr=1e-2", "--json") == 0
    sweep_id = json.loads(capsys.readouterr().out.splitlines()[-1])["sweep_id"]
    assert _cli("--runs-dir", str(runs_dir), "sweeps", "show", "deadbeef") == 2
    assert "No sweep match" in capsys.readouterr().err
    assert _cli("--runs-dir", str(runs_dir), "sweeps", "best", sweep_id, "--seeds", "3") == 0
    out = capsys.readouterr().out
    assert "seed 3: completed" in out


def test_cli_refusals_and_reads_load_no_tensorflow(tmp_path):
    """A refused sweep costs a fraction of a second: flags, values and every trial's config are checked
    before the engine loads; listing sweeps of a runs directory that does not exist creates nothing."""
    import os
    import subprocess
    import sys

    code = ("import sys; from workbench.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)); sys.exit(rc)")
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run([sys.executable, "-c", code, "sweep", *TINY, "--grid", "rank=0,4"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout.splitlines()[-1] == "[]"
    assert done.stderr.splitlines() == [done.stderr.strip()] and "rank=0 cannot run" in done.stderr
    done = subprocess.run([sys.executable, "-c", code, "sweeps", "list"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines() == ["[]"] and not (tmp_path / "runs").exists()


def test_one_reader_types_sweep_values_for_the_cli_and_the_train_page():
    from workbench.errors import WorkbenchError
    from workbench.sweeps.values import choices, grid_size, parse_values, value_of

    assert parse_values("method_options.rank", "4, 8;16", allow_range=False) == [4, 8, 16]
    assert parse_values("lr", "1e-3 0.01", allow_range=False) == [1e-3, 0.01]
    assert all(isinstance(v, float) for v in parse_values("lr", "1, 2", allow_range=False))  # lr is a float
    assert parse_values("lr", "1e-4 .. 1e-2", allow_range=True, log=True) == {"low": 1e-4, "high": 1e-2, "log": True}
    assert value_of("lr", "default") is None and value_of("augment", "on") is True
    assert "lora" in choices("method") and "bottom-up" in choices("hierarchical") and choices("lr") is None
    assert grid_size({"lr": [1, 2, 3], "seed": [0, 1]}) == 6 and grid_size({"lr": {"low": 1, "high": 2}}) is None
    for text, allow, message in (("fast", False, "rank takes whole numbers"), ("1 .. 32", False, "needs random search"),
                                 ("32 .. 1", True, "low < high"), (" , ", False, "at least one value")):
        with pytest.raises(WorkbenchError, match=message) as err:
            parse_values("method_options.rank", text, allow_range=allow)
        assert "Received:" in str(err.value) and "\n" not in str(err.value)
