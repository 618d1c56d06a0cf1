"""The CLI contract: each command, each exit code, one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from workbench.cli import main

BIN = Path(sys.executable).parent / "workbench"


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_and_datasets_json(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    models = {m["name"]: m for m in json.loads(out)}
    assert code == 0 and {"minilm-l6", "tiny-bert", "mnist-cnn", "mlp"} <= set(models)
    assert models["minilm-l6"]["params"] == 22_713_216 and models["tiny-bert"]["layer_groups"][0] == "embeddings"
    code, out, _ = run_cli(capsys, "datasets", "--json")
    names = {d["name"] for d in json.loads(out)}
    assert code == 0 and {"vader-sentiment", "vader-sentiment-score", "sms-spam", "mnist-5k", "digits", "diabetes"} <= names


def test_train_json_then_runs_list_show_export(capsys, runs_dir):
    code, out, _ = run_cli(capsys, "train", "--model", "mlp", "--data", "diabetes", "--method", "lora", "--rank", "4",
                           "--epochs", "2", "--batch-size", "16", "--json")
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["status"] == "completed"
    for key in ("run_id", "trainable_params", "total_params", "train_loss", "val_loss", "test_mae", "wall_s",
                "steps_per_s", "device"):
        assert summary[key] is not None, key
    run_id = summary["run_id"]
    code, out, _ = run_cli(capsys, "runs", "list", "--json")
    assert code == 0 and run_id in {r["id"] for r in json.loads(out)}
    code, out, _ = run_cli(capsys, "runs", "show", run_id[:17], "--json")
    assert code == 0 and json.loads(out)["status"] == "completed"
    code, out, _ = run_cli(capsys, "runs", "export", run_id, "--csv")
    assert code == 0 and out.startswith("run_id,step,epoch,key,value,wall") and "train/loss" in out


def test_config_file_with_flag_override(capsys, runs_dir, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[train]\nmodel = "mlp"\ndata = "diabetes"\nmethod = "full"\nepochs = 5\nbatch_size = 32\n')
    code, out, _ = run_cli(capsys, "train", "--config", str(config), "--epochs", "1", "--json")
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0
    code, out, _ = run_cli(capsys, "runs", "show", summary["run_id"], "--json")
    assert json.loads(out)["config"]["epochs"] == 1 and json.loads(out)["config"]["method"] == "full"


@pytest.mark.parametrize("args, message", [
    (["--method", "qlora"], "Unknown method"),
    (["--method", "lora", "--rank", "0"], "rank must be"),
    (["--rank", "4"], "rank is an option of method lora"),  # base method full: a LoRA option changes nothing
    (["--lr", "nan"], "lr must be"),
    (["--epochs", "0"], "epochs must be"),
    (["--batch-size", "100000"], "larger than the"),
    (["--data", "nope.csv"], "nope.csv"),
    (["--model", "nope"], "Unknown model"),
])
def test_bad_input_exits_2_with_one_line(capsys, runs_dir, args, message):
    base = {"--model": "mlp", "--data": "diabetes", "--method": "full"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, out, err = run_cli(capsys, "train", *[x for kv in base.items() for x in kv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_csv_and_refused_model_exit_2(capsys, runs_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nonly one class,a\nanother,a\n")
    code, _, err = run_cli(capsys, "train", "--model", "tiny-bert", "--data", str(bad), "--text-column", "text",
                           "--label-column", "label")
    assert code == 2 and "class" in err.lower()

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.Flatten()(x)
    lambda_model = keras.Model(inputs, keras.layers.Dense(10)(x))
    path = tmp_path / "lambda.keras"
    lambda_model.save(path)
    code, _, err = run_cli(capsys, "train", "--model", str(path), "--data", "digits", "--method", "full")
    assert code == 2 and "Lambda" in err


def test_failed_run_exits_1(capsys, runs_dir):
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--data", "diabetes", "--method", "full",
                             "--lr", "1e12", "--epochs", "20", "--json")
    assert code == 1 and json.loads(out.strip().splitlines()[-1])["status"] == "failed" and "failed at step" in err


def test_console_script_end_to_end(tmp_path):
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run([str(BIN), "train", "--model", "mnist-cnn", "--data", "digits", "--method", "linear",
                           "--epochs", "1", "--limit-per-class", "10", "--json"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["status"] == "completed"
    bad = subprocess.run([str(BIN), "train", "--method", "nope"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "Unknown method" in bad.stderr


def test_every_principle_is_a_flag(capsys, runs_dir):
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--data", "diabetes", "--method", "lora",
                             "--share", "tied", "--hierarchical", "top-down", "--stage-epochs", "1",
                             "--lr-schedule", "stlr", "--discriminative", "2.6", "--epochs", "4", "--json")
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0, err
    code, out, _ = run_cli(capsys, "runs", "export", summary["run_id"], "--csv")
    assert "trainable/block_1" in out and "lr/head" in out


@pytest.mark.parametrize("args, message", [
    (["--method", "adapter", "--share", "vera"], "share='vera' works with method lora only"),
    (["--method", "linear", "--share", "tied"], "share='tied' works with method"),
    (["--method", "linear", "--discriminative", "2"], "discriminative"),
    (["--method", "prompt", "--hierarchical", "bottom-up"], "hierarchical fine-tuning works with"),
    (["--method", "full", "--hierarchical", "bottom-up", "--stage-epochs", "9"], "do not fit"),
    (["--lr-schedule", "cyclic"], "lr_schedule must be"),
])
def test_invalid_combinations_exit_2(capsys, runs_dir, args, message):
    code, _, err = run_cli(capsys, "train", "--model", "mlp", "--data", "diabetes", "--epochs", "3", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_seeds_start_one_group_with_a_line_per_run(capsys, runs_dir, monkeypatch):
    from workbench.runs import RunStore
    from workbench.seed_groups import groups

    monkeypatch.setenv("WORKBENCH_EXPLAIN", "0")  # two tiny runs: the explain parts are not tested here
    code, out, err = run_cli(capsys, "train", "--model", "mnist-cnn", "--data", "digits", "--method", "lora",
                             "--limit-per-class", "5", "--epochs", "1", "--no-export-model", "--seeds", "0,1",
                             "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    group = json.loads(lines[-1])
    assert [line.split(": ")[0].split(" seed ")[1] for line in lines[:-1]] == ["0", "1"]  # a line per run
    assert all(": completed · test_accuracy " in line for line in lines[:-1])
    assert group["status"] == "completed" and group["seeds"] == [0, 1] and group["n"] == 2
    assert group["metric"] == "test_accuracy" and group["group"].endswith("(2 seeds)")
    values = [r["test_accuracy"] for r in group["runs"]]
    assert group["values"] == values and group["mean"] == pytest.approx(sum(values) / 2)
    assert group["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    found = groups(RunStore(runs_dir).runs_frame())
    assert len(found) == 1 and sorted(found[0].run_ids) == sorted(group["run_ids"]) and sorted(found[0].seeds) == [0, 1]


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,x"], "Received: seeds='0,x'"),
    (["--seeds", "1,1"], "Seed 1 is given twice"),
    (["--seeds", "0,1", "--seed", "2"], "Give --seed or --seeds, not both"),
    (["--seeds", "0,4294967296"], "seed must be between 0 and 4294967295"),
])
def test_bad_seeds_exit_2_with_one_line(capsys, runs_dir, args, message):
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--data", "diabetes", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == ""
    if "x" in args[1]:
        assert err.strip().endswith("Received: seeds='0,x'")
