"""The change map (`workbench.explain.changes`): what moved where, measured the way each method changes W."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import small_image_config
from helpers import prepared, train_here
from streamlit.testing.v1 import AppTest

from workbench.charts_changes import change_bars, change_heatmap, change_maps_side_by_side, spectra_figure
from workbench.config import TrainConfig
from workbench.explain import changes
from workbench.train import features

ROOT = Path(__file__).resolve().parents[1]
BODY = ["block_1", "block_2", "block_3"]


def run_with_map(store, **overrides):
    """Train a small mnist-cnn run; (prepared, summary, change/grad rows, changes.json)."""
    prep = prepared(small_image_config(export_model=False, **overrides))
    run_id, summary = train_here(prep, store)
    return prep, summary, map_rows(store, run_id), json.loads((store.run_dir(run_id) / "changes.json").read_text())


def map_rows(store, run_id) -> pd.DataFrame:
    m = store.metrics(run_id)
    return m[m["key"].str.startswith(("change/", "grad/"))]


def at_step(rows: pd.DataFrame, key: str) -> pd.Series:
    return rows[rows["key"] == key].set_index("step")["value"]


def final_weight(doc, group, name) -> float:
    return next(w["change"] for w in doc["weights"] if w["group"] == group and w["name"] == name)


# -- the arithmetic -------------------------------------------------------------------------------
def test_record_points_are_evenly_spaced_inside_the_first_epoch():
    assert changes.record_steps(12) == [2, 4, 6, 8, 10]
    assert changes.record_steps(3) == [1, 2]  # a short epoch: fewer points, never step 0 or its end
    assert changes.record_steps(1) == []


def test_lora_norm_and_spectrum_from_factors_equal_the_materialised_update():
    from workbench.peft.lora import lora_factors
    from workbench.peft.lora_layers import adopt

    rng = np.random.default_rng(0)
    plain = adopt(keras.layers.Dense(7, name="plain"))
    plain.build((None, 9))
    plain.enable_lora(3, lora_alpha=5.0)
    vera = adopt(keras.layers.Dense(7, name="vera"))
    vera.build((None, 9))
    a, b = keras.Variable(rng.normal(size=(9, 3))), keras.Variable(rng.normal(size=(3, 7)))
    vera.share_lora(a, b, 3, 2.0, mode="vera")
    vera.lora_vera_d.assign(rng.normal(size=3))
    vera.lora_vera_b.assign(rng.normal(size=7))
    plain.lora_kernel_a.assign(rng.normal(size=(9, 3)))
    plain.lora_kernel_b.assign(rng.normal(size=(3, 7)))
    for layer in (plain, vera):
        delta = keras.ops.convert_to_numpy(layer.lora_delta()).astype("float64")
        factors = lora_factors(layer)
        assert changes.low_rank_squares(*factors) == pytest.approx(np.sum(delta**2), rel=1e-5)
        np.testing.assert_allclose(changes.low_rank_singular_values(*factors),
                                   np.linalg.svd(delta, compute_uv=False)[:3], rtol=1e-4)
    assert changes.effective_rank(np.array([3.0, 0.5, 0.1])) == 1  # σ1² = 9 of 9.26: over 90 %
    assert changes.effective_rank(np.array([3.0, 1.0, 0.1])) == 2  # 9 of 10.01: just under
    assert changes.effective_rank(np.array([1.0, 1.0, 1.0])) == 3
    assert changes.effective_rank(np.zeros(4)) == 0


# -- real runs ----------------------------------------------------------------------------------------
def test_bottom_up_stage_one_moves_only_block_1_and_the_head(store):
    prep, summary, rows, doc = run_with_map(store, method="full", hierarchical="bottom-up", stage_steps=3,
                                            batch_size=10, epochs=2)
    assert len(prep.split.y_train) == 100  # 10 steps per epoch: record points 2, 3, 5, 7, 8, then 10 and 20
    assert sorted(at_step(rows, "change/head").index) == [2, 3, 5, 7, 8, 10, 20]
    in_stage_1 = 2  # stage 2 begins at step 3
    for group in ("block_2", "block_3"):
        assert at_step(rows, f"change/{group}")[in_stage_1] == 0.0
        assert at_step(rows, f"grad/{group}")[in_stage_1] == 0.0  # frozen: 0 by definition
    for group in ("block_1", "head"):
        assert at_step(rows, f"change/{group}")[in_stage_1] > 0
        assert at_step(rows, f"grad/{group}")[in_stage_1] > 0
    assert at_step(rows, "change/block_3")[5] == 0.0 < at_step(rows, "change/block_2")[5]  # stage 2: block_2
    assert all(summary[f"change_{g}"] > 0 for g in [*BODY, "head"])  # stage 3 trained everything
    assert summary["change_max_group"] in BODY + ["head"]
    assert set(doc["final"]) == {*BODY, "head"} and doc["record_steps"] == [2, 3, 5, 7, 8, 10, 20]
    kernel = final_weight(doc, "block_1", "conv_1/kernel")
    start = keras.ops.convert_to_numpy(prepared(prep.config).task_model.groups["block_1"][0].kernel)
    now = keras.ops.convert_to_numpy(prep.task_model.groups["block_1"][0].kernel)
    assert kernel == pytest.approx(np.linalg.norm(now - start) / np.linalg.norm(start), rel=1e-4)


def test_linear_probe_records_zero_for_the_backbone(store):
    prep = prepared(small_image_config(method="linear", export_model=False))
    assert features.plan(prep) is not None  # the feature-cached probe: only the head model trains
    _, summary, rows, doc = run_with_map(store, method="linear")
    for group in BODY:
        assert (at_step(rows, f"change/{group}") == 0).all() and (at_step(rows, f"grad/{group}") == 0).all()
    assert (at_step(rows, "change/head") > 0).all() and (at_step(rows, "grad/head") > 0).all()
    assert summary["change_max_group"] == "head" and summary["change_block_1"] == 0.0
    assert {w["group"] for w in doc["weights"]} == {"head"} and doc["spectra"] == []


@pytest.mark.parametrize("method, options, moved, weight", [
    ("dora", {}, {"block_3", "head"}, "features"),
    ("ia3", {}, {"block_3", "head"}, "features"),
    ("adapter", {}, {"block_3", "head"}, "features/adapter"),
    ("bitfit", {}, {*BODY, "head"}, "conv_1/bias"),
    ("lora", {"share": "vera"}, {"block_3", "head"}, "features"),
])
def test_each_method_measures_the_weight_it_changes(store, method, options, moved, weight):
    prep, summary, rows, doc = run_with_map(store, method=method, **options)
    assert {g for g in [*BODY, "head"] if summary[f"change_{g}"] > 0} == moved
    assert {g for g in [*BODY, "head"] if at_step(rows, f"grad/{g}").iloc[-1] > 0} == moved
    group = "block_1" if method == "bitfit" else "block_3"
    measured = final_weight(doc, group, weight)
    assert at_step(rows, f"change/{group}/{weight}").iloc[-1] == pytest.approx(measured)
    layer = prep.task_model.model.get_layer("mnist_cnn").get_layer("features")
    if method in ("dora", "lora"):  # the merged kernel, materialised here, against the frozen one
        frozen = keras.ops.convert_to_numpy(layer._kernel)
        merged = keras.ops.convert_to_numpy(layer.kernel)
        assert measured == pytest.approx(np.linalg.norm(merged - frozen) / np.linalg.norm(frozen), rel=1e-3)
        assert 1 <= summary["lora_effective_rank"] <= 8
    if method == "ia3":  # W·diag(l): the output columns scaled
        kernel, scale = keras.ops.convert_to_numpy(layer._kernel), keras.ops.convert_to_numpy(layer.ia3_scale)
        assert measured == pytest.approx(np.linalg.norm(kernel * (scale - 1)) / np.linalg.norm(kernel), rel=1e-4)


def test_lora_on_tiny_bert_per_weight_keys_and_spectra(store):
    config = TrainConfig(model="tiny-bert", data="sms-spam", method="lora", method_options={"rank": 4},
                         limit_per_class=8, max_seq_len=16, epochs=1, batch_size=8, export_model=False)
    prep = prepared(config)
    run_id, summary = train_here(prep, store)
    rows = map_rows(store, run_id)
    doc = json.loads((store.run_dir(run_id) / "changes.json").read_text())
    assert (at_step(rows, "change/embeddings") == 0).all() and (at_step(rows, "grad/embeddings") == 0).all()
    assert {f"change/block_{i}/{n}" for i in (1, 2) for n in ("query", "value")} <= set(rows["key"])
    backbone = prep.task_model.backbone
    for spectrum in doc["spectra"]:
        block = backbone.get_layer(f"transformer_layer_{int(spectrum['group'][-1]) - 1}")
        layer = next(x for x in block._flatten_layers() if x.name == spectrum["name"])
        delta = keras.ops.convert_to_numpy(layer.lora_delta()).reshape(layer.lora_kernel_a.shape[0], -1)
        assert len(spectrum["singular_values"]) == 4
        np.testing.assert_allclose(spectrum["singular_values"], np.linalg.svd(delta, compute_uv=False)[:4],
                                   rtol=1e-3, atol=1e-9)
        frozen = keras.ops.convert_to_numpy(layer._kernel)
        assert final_weight(doc, spectrum["group"], spectrum["name"]) == pytest.approx(
            np.linalg.norm(delta) / np.linalg.norm(frozen), rel=1e-4)
    assert len(doc["spectra"]) == 4 and 1 <= summary["lora_effective_rank"] <= 4


def test_prompt_measures_the_encoder_output_it_moves(store):
    config = TrainConfig(model="tiny-bert", data="sms-spam", method="prompt", limit_per_class=8, max_seq_len=16,
                         epochs=1, batch_size=8, export_model=False)
    run_id, summary = train_here(prepared(config), store)
    rows = map_rows(store, run_id)
    assert (at_step(rows, "change/embeddings/soft_prompt") > 0).all()
    assert (at_step(rows, "change/block_1") == 0).all() and (at_step(rows, "grad/block_2") == 0).all()
    assert summary["change_embeddings"] > 0 and summary["change_head"] > 0


def test_a_failing_measure_never_fails_the_run(store, monkeypatch):
    def broken(*args):
        raise RuntimeError("no gradients today")

    monkeypatch.setattr(changes, "probe_batch", broken)
    prep = prepared(small_image_config(export_model=False))
    run_id, summary = train_here(prep, store)
    assert summary["changes_error"] == "RuntimeError: no gradients today" and summary["test_accuracy"] >= 0
    assert map_rows(store, run_id).empty and not (store.run_dir(run_id) / "changes.json").exists()


@pytest.mark.slow
def test_jax_backend_records_the_same_kind_of_map(tmp_path):
    script = (f"import sys, json; sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
              "from conftest import small_image_config\nfrom helpers import prepared, train_here\n"
              "from workbench.runs import RunStore\n"
              f"store = RunStore({str(tmp_path / 'runs')!r})\n"
              "rid, s = train_here(prepared(small_image_config(export_model=False, hierarchical='top-down', "
              "stage_steps=4, epochs=2)), store)\n"
              "m = store.metrics(rid)\n"
              "print(json.dumps({k: m[m.key == k].value.tolist() for k in ('grad/head', 'grad/block_3', 'change/block_3')}"
              " | {'error': s.get('changes_error')}))\n")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["error"] is None
    assert all(v > 0 for v in found["grad/head"])
    assert found["grad/block_3"][0] == 0 and found["grad/block_3"][-1] > 0  # top-down: block_3 joins at step 4
    assert found["change/block_3"][0] == 0 < found["change/block_3"][-1]


# -- figures and the page ---------------------------------------------------------------------------
def frame(run_id="r", scale=1.0):
    rows = [(run_id, s, s // 10, f"{kind}/{g}", scale * (i + 1) * s / 100, 0.0)
            for s in (2, 5, 10, 20) for i, g in enumerate(["head", "block_1", "embeddings", "block_2"])
            for kind in ("change", "grad")]
    rows += [(run_id, 10, 0, "val/loss", 1.0, 0.0), (run_id, 20, 1, "val/loss", 0.9, 0.0)]
    return pd.DataFrame(rows, columns=["run_id", "step", "epoch", "key", "value", "wall"])


def test_heatmap_rows_go_bottom_up_on_a_fixed_scale():
    fig = change_heatmap(frame(), zmax=0.5)
    heat = fig.data[0]
    assert list(heat.y) == ["embeddings", "block_1", "block_2", "head"]  # y's first category is drawn lowest
    assert (heat.zmin, heat.zmax) == (0.0, 0.5)
    assert list(heat.x) == ["2", "5", "10<br>ep 1", "20<br>ep 2"]
    assert heat.z[0][-1] == pytest.approx(3 * 20 / 100)  # embeddings at step 20
    assert change_heatmap(frame(), metric="grad").data[0].colorscale != heat.colorscale
    assert "No data yet" in change_heatmap(frame().iloc[0:0]).layout.annotations[0].text


def test_two_runs_share_one_colour_scale():
    fig = change_maps_side_by_side([frame("a"), frame("b", scale=3.0)], ["small", "big"])
    assert len(fig.data) == 2 and {t.coloraxis for t in fig.data} == {"coloraxis"}
    assert fig.layout.coloraxis.cmax == pytest.approx(3.0 * 4 * 20 / 100)
    with pytest.raises(ValueError, match="one name per frame"):
        change_maps_side_by_side([frame()], ["a", "b"])


def test_bars_and_spectra_from_changes_json():
    doc = {"weights": [{"group": "head", "name": "head/kernel", "change": 0.3},
                       {"group": "block_1", "name": "query", "change": 0.1},
                       {"group": "head", "name": "head/bias", "change": None}],
           "spectra": [{"group": "block_1", "name": "query", "singular_values": [2.0, 1.0, 0.0],
                        "effective_rank": 2}], "energy": 0.9}
    bars = change_bars(doc)
    assert [t.name for t in bars.data] == ["block_1", "head"] and list(bars.data[1].x) == [0.3]
    assert len(change_bars(doc, max_bars=1).data) == 1
    spectra = spectra_figure(doc)
    assert list(spectra.data[0].y) == [1.0, 0.5, 0.0] and "2.0 on average" in spectra.layout.title.text
    assert "No data yet" in spectra_figure({"spectra": []}).layout.annotations[0].text


def _page_script() -> None:
    import os

    from pages._change_map import render_compare, render_run
    from workbench.runs import RunStore

    store = RunStore(os.environ["WORKBENCH_RUNS_DIR"])
    ids = os.environ["CHANGE_MAP_RUNS"].split(",")
    render_run(ids[0], store)
    render_compare(ids, store)


def test_page_draws_a_run_and_a_comparison(store, monkeypatch):
    configs = [small_image_config(export_model=False, method=m) for m in ("lora", "full")]
    ids = [train_here(prepared(c), store)[0] for c in configs]
    monkeypatch.setenv("CHANGE_MAP_RUNS", ",".join(ids))
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    at = AppTest.from_function(_page_script, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    specs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert titles[0].startswith("What changed where") and "Low-rank update spectra" in titles[2]
    assert "one colour scale" in titles[-1] and len(specs[-1]["data"]) == 2
    assert "white = unchanged" in at.caption[0].value and at.dataframe[0].value.shape == (4, 2)
    at.segmented_control(key="change_map_show").set_value("Gradient norm").run()
    assert "Gradient norm" in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]


def test_the_gradient_tap_reads_the_training_steps_own_gradients():
    """TensorFlow: the tap's ‖g‖² per variable equal a GradientTape's on the same batch and weights, and
    an embedding's sparse gradient (a token twice in the batch) is summed per row before squaring."""
    import keras
    import numpy as np
    import tensorflow as tf

    from workbench.explain.grad_tap import GradientTap, _squared_norm

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(2, name="b")])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    x, y = np.random.default_rng(0).normal(size=(8, 4)).astype("float32"), np.arange(8) % 2
    with tf.GradientTape() as tape:
        expected = tape.gradient(loss(y, model(x, training=True)), model.trainable_variables)
    tap = GradientTap(model.optimizer, model.trainable_variables)
    model.train_on_batch(x, y)
    np.testing.assert_allclose(tap.read(), [float(tf.reduce_sum(g * g)) for g in expected], rtol=1e-5)
    tap.detach()
    assert "apply" not in model.optimizer.__dict__
    sparse = tf.IndexedSlices(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([5, 5]), tf.constant([9, 2]))
    assert float(_squared_norm(sparse)) == (1 + 3) ** 2 + (2 + 4) ** 2
