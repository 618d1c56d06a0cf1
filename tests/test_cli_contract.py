"""The CLI's refusal contract (issue 12): exit code 2, exactly one stderr line, nothing before it.

In-process cases (`main([...])` with capsys) cover the messages; a few subprocess cases cover what
only a fresh process shows: TensorFlow is not imported for a refused flag or a `runs` read, and the
native libraries' start-up lines do not reach stderr when a refusal comes after the engine loaded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.config import TrainConfig
from workbench.errors import ConfigError
from workbench.runs.store import RunStore

BIN = Path(sys.executable).parent / "workbench"
GHOST = "20991231-000000-abcdef"  # well-formed, in no store


def refused(capsys, *args: str) -> str:
    """Run the CLI in-process; assert the refusal contract and return the one stderr line."""
    code = main(list(args))
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert out == "", out
    return lines[0]


# -- 1. a well-formed run id that names no run -------------------------------------------------------
@pytest.mark.parametrize("args", [["runs", "show", GHOST], ["runs", "show", GHOST, "--json"],
                                  ["runs", "export", GHOST, "--csv"], ["train", "--from-run", GHOST]],
                         ids=["show", "show --json", "export --csv", "train --from-run"])
def test_unknown_run_id_is_refused(capsys, runs_dir, args):
    RunStore(runs_dir)  # a store with no such run (a missing store: test_reading_a_missing_runs_dir_creates_nothing)
    line = refused(capsys, *args)
    assert f"No run {GHOST} in {runs_dir}" in line and "workbench runs list" in line
    assert line.endswith(f"Received: run_id='{GHOST}'")


def test_from_run_and_config_together_are_refused(capsys, runs_dir, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('model = "mlp"\n')
    assert "not both" in refused(capsys, "train", "--from-run", GHOST, "--config", str(config))


# -- 2. argparse errors: one line with the fix, not thirty lines of usage ---------------------------
@pytest.mark.parametrize("args, expected", [
    (["train", "--epochs", "three"], "argument --epochs: 'three' is not a whole number: give e.g. --epochs 3, "
                                     "see `workbench train --help`. Received: epochs='three'"),
    (["train", "--lr", "fast"], "'fast' is not a number: give e.g. --lr 0.001"),
    (["train", "--rnak", "4"], "did you mean --rank? see `workbench train --help`. Received: argument='--rnak'"),
    (["runs", "list", "--bogus"], "see `workbench runs list --help`"),
    (["trian"], "invalid choice: 'trian': pick one of 'models'"),
    (["runs", "show"], "the following arguments are required: run_id"),
    (["train", "--epochs"], "expected one argument: give it a value"),
], ids=["int", "float", "misspelt flag", "unknown flag", "command", "missing", "no value"])
def test_argparse_errors_are_one_line(capsys, args, expected):
    assert expected in refused(capsys, *args)


# -- 4. TOML files: strict types, nothing silently dropped ------------------------------------------
TOML_CASES = [
    ("epochs = true", "epochs must be a whole number"), ("batch_size = true", "batch_size must be a whole number"),
    ("rank = true", "rank must be a whole number"), ("epochs = 2.5", "epochs must be a whole number"),
    ("alpha = true", "alpha must be a number"), ("lr = \"1e-3\"", "lr must be a number"),
    ("augment = 1", "augment must be true or false"), ("name = 3", "name must be text"),
    ("tags = [1, 2]", "tags must be a list of names"), ("jit_compile = 1", "jit_compile must be"),
    ("epoch = 3", "Unknown config key 'epoch': did you mean 'epochs'?"),
    ("batch-size = 8", "did you mean 'batch_size'?"),
    ("[extra]\nx = 1", "Unknown config key 'extra'"),
]


@pytest.mark.parametrize("line, message", TOML_CASES, ids=[c[0].split("\n")[0] for c in TOML_CASES])
def test_toml_values_are_checked_strictly(tmp_path, line, message):
    for layout in ("{line}\n", "[train]\n{line}\n"):
        path = tmp_path / "run.toml"
        path.write_text(layout.format(line=line).replace("[train]\n[extra]", "[train]\n[train.extra]"))
        with pytest.raises(ConfigError, match=re.escape(message)):
            TrainConfig.from_toml(path)


@pytest.mark.parametrize("outside, message", [
    ("epochs = 5", "Config key 'epochs' is outside the [train] table and would be ignored: move it under [train]"),
    ("epohcs = 5", "is not an option either (did you mean 'epochs'?): fix the name and put it under [train]"),
    ("[model]\nname = 'x'", "Config key 'model' is outside the [train] table"),
])
def test_toml_keys_beside_the_train_table_are_refused(capsys, runs_dir, tmp_path, outside, message):
    path = tmp_path / "run.toml"
    body = '[train]\nmodel = "mlp"\ndata = "diabetes"\n'
    path.write_text(outside + "\n" + body if not outside.startswith("[") else body + outside + "\n")
    assert message in refused(capsys, "train", "--config", str(path))


def test_toml_numbers_that_fit_are_kept(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nepochs = 2.0\nalpha = 8\ntags = "a, b"\nseed = 4294967295\n')
    config = TrainConfig.from_toml(path)
    assert (config.epochs, config.options.alpha, config.tags, config.seed) == (2, 8.0, ["a", "b"], 2**32 - 1)
    assert type(config.epochs) is int and type(config.options.alpha) is float


def test_method_options_load_nested_flat_and_from_flags(tmp_path):
    """`[train.method_options]`, the flat keys of earlier versions, and flags that override either."""
    nested, flat = tmp_path / "nested.toml", tmp_path / "flat.toml"
    nested.write_text('[train]\nmethod = "lora"\n[train.method_options]\nrank = 4\n')
    flat.write_text('[train]\nmethod = "lora"\nrank = 4\n')
    assert TrainConfig.from_toml(nested).method_options == TrainConfig.from_toml(flat).method_options
    assert TrainConfig.from_toml(nested).options.rank == 4
    assert TrainConfig.from_toml(nested, rank=16).options.rank == 16  # a flag wins over the file
    assert TrainConfig.from_toml(flat, method="full").method_options == {}  # another method: its own defaults
    stored = {**TrainConfig(method="full").to_dict(), "rank": 8, "adapter_size": 16}  # as earlier runs stored
    stored.pop("method_options")
    assert TrainConfig.from_dict(stored).method == "full"
    with pytest.raises(ConfigError, match="adapter_size is an option of method adapter, not lora"):
        TrainConfig.from_dict({"method": "lora", "adapter_size": 32})


# -- 5. settings a run cannot use: refused before anything is queued ---------------------------------
TINY = ["train", "--model", "tiny-bert", "--data", "sms-spam", "--max-rows", "200", "--epochs", "1"]
MLP = ["train", "--model", "mlp", "--data", "diabetes", "--epochs", "1"]


@pytest.mark.parametrize("args, message", [
    ([*MLP, "--seed", "8589934592"], "seed must be between 0 and 4294967295"),
    ([*TINY, "--method", "prompt", "--prompt-length", "100"],
     "max_seq_len + prompt_length (64 + 100) exceeds tiny-bert's 128 positions: use --prompt-length 64 or less"),
    ([*TINY, "--method", "prompt", "--max-seq-len", "200"], "exceeds tiny-bert's 128 positions: use --max-seq-len 120"),
    ([*MLP, "--method", "prompt"], "Prompt tuning needs a transformer text model"),
    ([*TINY, "--lora-targets", "nothere"], "Target 'nothere' is not a layer of tiny-bert: use some of "
                                           "attention_output, feedforward_intermediate_dense"),
    ([*TINY, "--lora-targets", "query,valeu"], "'valeu' is not a layer of tiny-bert (did you mean 'value'?)"),
    ([*MLP, "--lora-targets", ","], "lora option lora_targets must name at least 1 entry"),
    ([*MLP, "--rank", "100"], "exceeds layer"),
    ([*MLP, "--strategy", "multiworker"], "--strategy multiworker needs TF_CONFIG"),
], ids=["seed", "prompt length", "prompt positions", "prompt on mlp", "lora targets", "lora typo", "no targets",
        "rank too wide", "multiworker"])
def test_unusable_settings_are_refused_not_failed(capsys, runs_dir, monkeypatch, args, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert message in refused(capsys, *args)
    assert RunStore(runs_dir).list_runs() == []  # nothing was queued, nothing failed


def test_unreadable_tf_config_is_refused(capsys, runs_dir, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    assert "TF_CONFIG is not valid JSON" in refused(capsys, *MLP, "--strategy", "multiworker")
    monkeypatch.setenv("TF_CONFIG", '{"task": {"type": "worker", "index": 0}}')
    assert "needs a 'cluster' table" in refused(capsys, *MLP, "--strategy", "multiworker")


# -- 6. model paths: say what is actually wrong ------------------------------------------------------
@pytest.mark.parametrize("kind, message", [
    ("device", "not a regular file (a device, pipe or socket): give a .keras file"),
    ("folder", "is a folder, not a file"), ("folder.keras", "is a folder, not a file"),
    ("missing", "Model file not found"), ("name", "Unknown model (did you mean 'tiny-bert'?)"),
])
def test_model_paths_say_what_is_wrong(capsys, runs_dir, tmp_path, kind, message):
    paths = {"device": "/dev/null", "folder": str(tmp_path), "folder.keras": str(tmp_path / "saved.keras"),
             "missing": str(tmp_path / "none" / "model"), "name": "tiny-bret"}
    (tmp_path / "saved.keras").mkdir()
    line = refused(capsys, "train", "--model", paths[kind], "--data", "digits", "--method", "full")
    assert message in line and line.endswith(f"Received: model='{paths[kind]}'")


# -- 6. `runs show`: readable local times in the text view, raw numbers in --json ---------------------
def test_runs_show_prints_readable_times(capsys, runs_dir):
    store = RunStore(runs_dir)
    run_id = store.create_run(TrainConfig(model="mlp", data="diabetes").to_dict(), "a run", status="completed")
    started = time.time() - 90
    store.update_run(run_id, started=started, ended=started + 60.0)
    assert main(["runs", "show", run_id]) == 0
    shown = dict(line.strip().split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert shown["started"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    for key in ("created", "updated", "ended"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown[key]), (key, shown[key])
    assert shown["wall_s"] == "60.0" and json.loads(shown["config"])["model"] == "mlp"
    assert main(["runs", "show", run_id, "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["started"] == pytest.approx(started) and isinstance(raw["created"], float)


# -- 2/3. fresh processes: no TensorFlow for refusals and reads; no native log lines on stderr ------
def _fresh(args: list[str], env: dict[str, str]) -> tuple[int, list[str], str]:
    """`workbench.cli.main(args)` in a new interpreter; the last stdout line lists heavy modules loaded."""
    code = ("import sys; from workbench.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    return done.returncode, done.stdout.splitlines(), done.stderr


def test_refusals_and_reads_do_not_import_tensorflow(tmp_path):
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    code, out, err = _fresh(["train", "--rank", "0"], env)
    assert code == 2 and out[-1] == "[]" and err.splitlines() == [
        "error: lora option rank must be between 1 and 1024. Received: rank=0"]
    code, out, err = _fresh(["train", "--epochs", "three"], env)
    assert code == 2 and out[-1] == "[]" and len(err.splitlines()) == 1
    code, out, err = _fresh(["runs", "list"], env)
    assert code == 0 and out == ["[]"] and err == ""
    code, out, err = _fresh(["runs", "show", GHOST], env)
    assert code == 2 and out[-1] == "[]" and len(err.splitlines()) == 1


def test_refusal_after_the_engine_loads_is_one_line(tmp_path):
    """The console script: TensorFlow loads and builds tiny-bert, yet stderr holds only the refusal."""
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([str(BIN), *TINY[0:5], "--lora-targets", "nothere"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(
        "error: Target 'nothere' is not a layer of tiny-bert"), done.stderr


def test_reading_a_missing_runs_dir_creates_nothing(capsys, tmp_path):
    """A mistyped --runs-dir: `runs list` says there are no runs there, `runs show` refuses; no store appears."""
    missing = tmp_path / "typo"
    assert main(["--runs-dir", str(missing), "runs", "list", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    line = refused(capsys, "--runs-dir", str(missing), "runs", "show", GHOST)
    assert f"No run {GHOST} in {missing} (no run store there)" in line and "--runs-dir" in line
    assert not missing.exists()
