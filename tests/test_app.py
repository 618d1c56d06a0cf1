"""Every page renders under Streamlit's AppTest, its key widgets exist, its charts hold real data.

Charts are read from the Plotly JSON spec Streamlit sends to the browser (base64 typed arrays
decoded), so "has data" means the browser would draw points. Each test gets its own runs directory
(WORKBENCH_RUNS_DIR) and empty Streamlit caches.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from workbench.config import TrainConfig
from workbench.presets import presets
from workbench.runs import RunManager

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180
TINY = dict(model="mnist-cnn", data="mnist-5k-unseen", limit_per_class=10, epochs=1, batch_size=8)


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(path))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield path
    for run_id in RunManager.get(path).active():  # never leave a thread writing into a deleted folder
        RunManager.get(path).stop(run_id)
        RunManager.get(path).wait(run_id, 120)
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def finished_run(runs_dir: Path) -> str:
    """A real tiny run (mnist-cnn on 50 unseen digits, one epoch), trained to completion."""
    manager = RunManager.get(runs_dir)
    run_id = manager.start(TrainConfig(**TINY, name="tiny lora"))
    assert manager.wait(run_id, timeout=TIMEOUT) == "completed", manager.store.get_run(run_id).error
    return run_id


def open_page(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(page)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _values(v: Any) -> np.ndarray:
    """A Plotly JSON array: a plain list or a base64 typed array ({"dtype": "f8", "bdata": ...})."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v if v is not None else [], dtype=object)


def figures(at: AppTest) -> list[dict[str, Any]]:
    """The Plotly figures on the page, as the browser receives them."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def titled(at: AppTest, text: str) -> dict[str, Any]:
    for fig in figures(at):
        title = fig["layout"].get("title", {}).get("text") or ""
        if text.lower() in title.lower():
            return fig
    raise AssertionError(f"no chart titled {text!r}: {[f['layout'].get('title', {}).get('text') for f in figures(at)]}")


def points(fig: dict[str, Any], name: str | None = None) -> int:
    traces = [t for t in fig["data"] if name is None or t.get("name") == name]
    return sum(len(_values(t.get("y"))) for t in traces)


# -- every page renders ---------------------------------------------------------------------------
def test_home_without_runs(runs_dir: Path) -> None:
    at = open_page()
    assert at.title[0].value == "PEFT Workbench"
    assert len(at.get("page_link")) >= 5
    assert any("No runs yet" in i.value for i in at.info)


def test_runs_and_compare_without_runs(runs_dir: Path) -> None:
    for page in ("pages/runs.py", "pages/compare.py"):
        at = open_page(page)
        assert at.info and "No runs yet" in at.info[0].value


def test_train_page_previews_the_run(runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    for key in ("train_data", "train_model_text", "train_method", "train_schedule", "train_preset"):
        assert at.selectbox(key=key) is not None
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    assert at.selectbox(key="train_model_image").value == "mnist-cnn"  # only image models are offered
    assert len(at.selectbox(key="train_model_image").options) == 1
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trainable parameters"] != "—" and metrics["Total parameters"] != "—"
    bar = titled(at, "Trainable parameters")
    assert sum(len(_values(t.get("x"))) for t in bar["data"]) == 2
    assert points(titled(at, "Learning-rate schedule")) > 0
    assert points(titled(at, "Class balance")) == 5
    assert not at.error


def test_train_shows_stage_diagram_and_discriminative_curves(runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    at.segmented_control(key="train_hier").set_value("top-down")
    at.toggle(key="train_disc_on").set_value(True)
    at.selectbox(key="train_schedule").set_value("stlr").run()
    assert not at.exception and not at.error
    stages = titled(at, "Hierarchical fine-tuning: top-down")
    assert stages["data"][0]["type"] == "heatmap"
    schedule = titled(at, "Learning-rate schedule: stlr")
    assert {t["name"] for t in schedule["data"]} == {"block_1", "block_2", "block_3", "head"}


def test_every_method_gets_its_option_widgets_from_the_registry(runs_dir: Path) -> None:
    """The Train form's method section is generated: each registered method shows one widget per option
    and a preview; an option's value reaches the preview (LoRA's rank changes the trainable count)."""
    from workbench.peft import methods

    at = open_page("pages/train.py")  # text data: tiny-bert, every method applies
    for method in methods():
        at.selectbox(key="train_method").set_value(method.name).run()
        assert not at.exception and not at.error, (method.name, [e.value for e in at.error])
        labels = {w.label for kind in ("select_slider", "toggle", "multiselect", "number_input", "selectbox")
                  for w in at.get(kind)}
        for f in method.option_fields():
            assert (f.metadata.get("label") or f.name.replace("_", " ").capitalize()) in labels, (method.name, f.name)
        assert {m.label: m.value for m in at.metric}["Trainable parameters"] != "—", method.name
    at.selectbox(key="train_method").set_value("lora").run()
    before = {m.label: m.value for m in at.metric}["Trainable parameters"]
    at.select_slider(key="train_lora_rank").set_value(32).run()
    assert _count({m.label: m.value for m in at.metric}["Trainable parameters"]) > _count(before)


def test_train_offers_albert_tying_for_transformers_and_previews_it(runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    assert at.selectbox(key="train_model_text").value in ("tiny-bert", "minilm-l6")
    at.selectbox(key="train_method").set_value("full").run()
    before = {m.label: m.value for m in at.metric}["Total parameters"]
    at.toggle(key="train_tie").set_value(True).run()
    assert not at.exception and not at.error
    after = {m.label: m.value for m in at.metric}["Total parameters"]
    assert _count(after) < _count(before)  # one block's weights left the model
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    assert not [t for t in at.toggle if t.key == "train_tie"]  # no transformer block to tie


def _count(text: str) -> float:
    """'544k' / '22.7M' / '4,354' -> a number."""
    number = text.replace(",", "").split()[0]
    scale = {"k": 1e3, "K": 1e3, "M": 1e6}.get(number[-1:], 1)
    return float(number.rstrip("kKM")) * scale


def test_train_bad_config_shows_error_not_exception(runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    at.number_input(key="train_limit").set_value(2)
    at.select_slider(key="train_batch").set_value(256).run()
    assert not at.exception
    assert any("batch_size 256 is larger" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "train_start"]  # the page stopped before the Start button


def test_start_run_switches_to_runs_page(runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    at.number_input(key="train_limit").set_value(10)
    at.number_input(key="train_epochs").set_value(1)
    at.select_slider(key="train_batch").set_value(8).run()
    at.text_input(key="train_name").input("from the form")
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_id = at.query_params["run"]
    manager = RunManager.get(runs_dir)
    assert manager.store.get_run(run_id).name == "from the form"
    assert at.title[0].value == "Runs"
    assert manager.wait(run_id, TIMEOUT) == "completed"


def test_preset_starts_matched_runs_and_opens_compare(runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    at.number_input(key="train_limit").set_value(10)
    at.number_input(key="train_epochs").set_value(1)
    at.select_slider(key="train_batch").set_value(8).run()
    at.selectbox(key="train_preset").set_value("LoRA vs full").run()
    at.button(key="train_preset_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ids = at.query_params["runs"].split(",")
    manager = RunManager.get(runs_dir)
    assert [manager.store.get_run(i).config["method"] for i in ids] == ["lora", "full"]
    assert at.title[0].value == "Compare"
    for run_id in ids:
        assert manager.wait(run_id, TIMEOUT) == "completed"


def test_runs_page_shows_the_curves_of_a_real_run(finished_run: str) -> None:
    at = open_page("pages/runs.py", run=finished_run)
    assert at.query_params["run"] == finished_run
    assert at.selectbox(key="runs_pick").value == finished_run
    loss = titled(at, "Loss")
    assert points(loss, "train loss (raw)") >= 7  # 50 images / batch 8 = 7 steps
    assert points(loss, "val loss") == 1
    assert points(titled(at, "Learning rate")) >= 7
    assert points(titled(at, "Throughput")) >= 7
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step (of 7)"] == "7" and metrics["Trainable params"] != "—"
    assert any(m.startswith("Phases: loading data") for m in (c.value for c in at.caption))
    assert "test accuracy" in metrics
    assert at.get("download_button")


def test_runs_page_survives_a_bad_link(finished_run: str) -> None:
    at = open_page("pages/runs.py", run="../../etc/passwd")
    assert at.warning and "unknown" in at.warning[0].value
    assert at.query_params["run"] == finished_run  # falls back to the newest run


def test_compare_page_overlays_runs_from_the_url(finished_run: str, runs_dir: Path) -> None:
    manager = RunManager.get(runs_dir)
    second = manager.start(TrainConfig(**{**TINY, "seed": 1, "method": "linear"}))
    assert manager.wait(second, TIMEOUT) == "completed"
    at = open_page("pages/compare.py", runs=f"{finished_run},{second}")
    assert at.multiselect(key="compare_runs").value == [finished_run, second]
    main = titled(at, "train/loss by run")
    named = [t for t in main["data"] if t.get("name")]
    assert len(named) == 2 and all(len(_values(t["y"])) >= 7 for t in named)
    assert points(titled(at, "val/loss by run")) == 2
    table = at.dataframe[0].value
    assert len(table) == 2 and "test_accuracy" in table.columns
    assert at.get("download_button")
    at.segmented_control(key="compare_x").set_value("examples").run()
    xs = _values(titled(at, "train/loss by run")["data"][0]["x"]).astype(float)
    assert xs.max() >= 7 * 8  # steps × batch size
    at.multiselect(key="compare_runs").unselect(second).run()
    assert at.query_params["runs"] == finished_run


def test_learn_page_demos_have_data(runs_dir: Path) -> None:
    at = open_page("pages/learn.py")
    assert not at.error
    assert len(at.latex) >= 3
    for fig in figures(at):
        assert any(len(_values(t.get("y" if t.get("type") != "heatmap" else "z"))) for t in fig["data"]), fig["layout"]
    sharing = titled(at, "What sharing saves")
    counts = dict(zip(sharing["data"][0]["x"], _values(sharing["data"][0]["y"]).astype(int), strict=True))
    # tiny-bert: L = 4 adapted 128×128 layers, r = 8; tied trains one pair plus a scale vector per layer
    assert counts == {"full fine-tuning": 4 * 128 * 128, "LoRA": 2 * 4 * 128 * 8, "tied LoRA": 2 * 128 * 8 + 4 * 8,
                      "VeRA": 4 * (128 + 8)}
    toy = titled(at, "trainable numbers")["layout"]["title"]["text"]
    assert toy.startswith("512 trainable numbers make a 32×32 update: 50% of its 1024")  # LoRA saves by default
    at.select_slider(key="learn_gd_lr").set_value(1.2).run()
    assert "diverges" in [m for m in at.metric if m.label.startswith("Factor")][0].proto.delta


def test_data_models_page_and_bad_uploads(runs_dir: Path) -> None:
    at = open_page("pages/data_models.py")
    assert len(at.dataframe) >= 2 and not at.error
    at.file_uploader(key="dm_csv_file").upload("../../evil name.csv", b"text,label\nhello,a\nworld,a\nagain,a\n",
                                               "text/csv")
    at.run()
    assert not at.exception
    assert any("at least 2 classes" in e.value for e in at.error)
    assert not list(runs_dir.glob("uploads/*/datasets/**/*.csv"))  # refused: not kept, whatever its name
    at.file_uploader(key="dm_keras_file").upload("model.keras", b"not a zip at all", "application/octet-stream")
    at.run()
    assert not at.exception
    assert any("Not a Keras model file" in e.value for e in at.error)


def test_train_with_a_good_csv(runs_dir: Path) -> None:
    rows = "\n".join(f"{'great fun' if i % 2 else 'awful bore'} {i},{'pos' if i % 2 else 'neg'}" for i in range(200))
    at = open_page("pages/train.py")
    at.segmented_control(key="train_source").set_value("CSV file").run()
    at.file_uploader(key="train_csv_file").upload("reviews.csv", f"review,sentiment\n{rows}\n".encode(), "text/csv")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    offered = at.selectbox(key="train_model_text").options  # formatted "title · name": text models only
    assert [o.rsplit(" ", 1)[-1] for o in offered] == ["minilm-l6", "tiny-bert"]
    assert points(titled(at, "Class balance")) == 2


# -- presets are pure config transformations -------------------------------------------------------
def test_presets_vary_only_their_subject() -> None:
    base = TrainConfig(**TINY, method="linear", seed=3)
    table = presets()
    assert list(table) == ["LoRA vs full", "bottom-up vs top-down", "plateau vs constant LR",
                           "Forgetting: full vs LoRA vs staged"]
    lora, full = table["LoRA vs full"](base)
    assert (lora.name, lora.method, full.name, full.method) == (
        "lora · mnist-cnn/mnist-5k-unseen · s3", "lora", "full · mnist-cnn/mnist-5k-unseen · s3", "full")
    baseline, down = table["bottom-up vs top-down"](base)  # bottom-up would change nothing on mnist-cnn LoRA
    assert (baseline.hierarchical, down.hierarchical) == ("off", "top-down") and baseline.method == "lora"
    plateau, constant = table["plateau vs constant LR"](TrainConfig(**TINY, name="demo"))
    assert (plateau.name, constant.lr_schedule) == ("demo · plateau", "constant")
    for variant in (lora, full, baseline, down, plateau, constant):
        assert (variant.data, variant.epochs, variant.batch_size, variant.limit_per_class) == (
            base.data, base.epochs, base.batch_size, base.limit_per_class)
        assert any(t.startswith("preset:") for t in variant.tags)


def test_forgetting_preset_is_five_variants_times_three_seeds_at_one_high_lr() -> None:
    runs = presets()["Forgetting: full vs LoRA vs staged"](TrainConfig(model="mnist-cnn", data="digits", epochs=4))
    assert len(runs) == 15 and {r.seed for r in runs} == {0, 1, 2}
    assert {r.lr for r in runs} == {0.01} and {r.limit_per_class for r in runs} == {10}  # 10 × full's 1e-3
    kinds = {(r.method, r.hierarchical, r.lr_schedule) for r in runs}
    assert kinds == {("full", "off", "constant"), ("lora", "off", "constant"), ("full", "bottom-up", "constant"),
                     ("full", "top-down", "constant"), ("full", "off", "plateau")}
    assert {(r.epochs, r.batch_size) for r in runs} == {(5, 16)}  # the study's forgetting suite, run for run
    assert all("preset:forgetting-full-vs-lora-vs-staged" in r.tags for r in runs)
    text = presets()["Forgetting: full vs LoRA vs staged"](TrainConfig(model="tiny-bert", data="sms-spam"))
    assert {r.lr for r in text} == {5e-4}  # the text default (5e-5) × 10, not the CNN's


def test_uploaded_keras_model_is_checked_and_offered(runs_dir: Path) -> None:
    at = open_page("pages/data_models.py")
    weights = (ROOT / "sample_data" / "models" / "mnist-cnn.keras").read_bytes()
    at.file_uploader(key="dm_keras_file").upload("My Model (v2).keras", weights, "application/octet-stream")
    at.run()
    assert not at.exception and not at.error
    assert at.success and "Loaded safely" in at.success[0].value
    [stored] = runs_dir.glob("uploads/*/models/*.keras")
    assert stored.name.startswith("my-model-v2-") and stored.suffix == ".keras"
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    assert any(o.endswith(stored.name) for o in at.selectbox(key="train_model_image").options)
    at.selectbox(key="train_model_image").set_value(str(stored)).run()
    assert not at.exception
    # the backbone file ends in 64 features, not 5 classes: a one-line reason, not a traceback
    assert any("outputs 64 values" in e.value for e in at.error)


def test_run_again_with_changes_fills_the_train_form_with_the_runs_settings(runs_dir: Path) -> None:
    manager = RunManager.get(runs_dir)
    config = TrainConfig(**{**TINY, "seed": 3}, lr_schedule="plateau", plateau_patience=2, early_stopping=2,
                         method_options={"rank": 4}, name="to fork")
    run_id = manager.start(config)
    assert manager.wait(run_id, timeout=TIMEOUT) == "completed"
    at = open_page("pages/runs.py", run=run_id)
    at.button(key="steer_fork").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Train"
    assert "The form holds the settings of run to fork" in at.info[0].value
    assert at.selectbox(key="train_data").value == "mnist-5k-unseen"
    assert at.number_input(key="train_limit").value == 10 and at.number_input(key="train_seed").value == 3
    assert at.number_input(key="train_es").value == 2
    assert at.select_slider(key="train_lora_rank").value == 4
    at.switch_page("pages/train.py").run()  # (AppTest reruns the page it was told, not the one switched to)
    assert at.number_input(key="train_seed").value == 3 and not at.info, "the form kept the settings, the note went"
    at.number_input(key="train_epochs").set_value(2)  # the change
    at.text_input(key="train_name").input("forked")
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    forked = manager.store.get_run(at.query_params["run"])
    assert manager.wait(forked.id, TIMEOUT) == "completed"
    differs = {k for k, v in forked.config.items() if manager.store.get_run(run_id).config.get(k) != v}
    assert differs == {"epochs", "name"}, differs
