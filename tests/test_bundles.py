"""Run bundles: two real runs exported to one zip and imported into a fresh store, and every refusal.

The refusals start from the real bundle and change one thing each (a path, a pickle, a lying zip
header, a field from a newer workbench, a hash), then check the message and that the target store
holds no run row, no metric row and no new file afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import small_image_config

from workbench.errors import WorkbenchError
from workbench.runs import RunManager, RunStore, bundle_import, bundles, interventions


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two finished tiny runs (LoRA with adapter + export, full fine-tuning with its export only)."""
    root = tmp_path_factory.mktemp("a")
    manager = RunManager(root, executor="thread")
    ids = [manager.start(small_image_config(method="lora", epochs=2, seed=1)),
           manager.start(small_image_config(method="full", epochs=1))]
    assert [manager.wait(i, timeout=300) for i in ids] == ["completed", "completed"]
    store = manager.store
    interventions.add(store, ids[0], "lr", {"scale": 0.5}, "cli", step=3, outcome="LR ×0.5 for every group")
    interventions.add(store, ids[0], "stop_epoch", {}, "app")  # never applied: kept as it is
    buffer = io.BytesIO()
    summary = bundles.export_bundle(store, ids, buffer)
    yield SimpleNamespace(store=store, ids=ids, data=buffer.getvalue(), summary=summary)
    manager.close()


def entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip(files: dict[str, bytes], *, manifest: bool = True, links: tuple[str, ...] = ()) -> bytes:
    """A bundle from entries; the manifest's file list is recomputed unless `manifest=False`."""
    files = dict(files)
    if manifest:
        m = json.loads(files["manifest.json"])
        m["files"] = {n: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                      for n, b in files.items() if n != "manifest.json"}
        files["manifest.json"] = json.dumps(m).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o120777 if name in links else 0o100644) << 16
            zf.writestr(info, body)
    return out.getvalue()


def patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Set an entry's uncompressed size in its local header (offset 22) and its central directory
    record (offset 24) without touching its data: what a crafted or damaged zip looks like."""
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        local = zf.getinfo(name).header_offset
    assert raw[local:local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", raw, local + 22, size)
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46:at + 46 + name_len] == name.encode():
            struct.pack_into("<I", raw, at + 24, size)
            return bytes(raw)
        at = raw.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} not in the central directory")


def tree(store: RunStore) -> set[str]:
    return {str(p.relative_to(store.runs_dir)) for p in store.runs_dir.rglob("*")}


def refused(store: RunStore, data: bytes, match: str) -> None:
    """The import is refused with `match` in its one line, and the store is as it was."""
    before = tree(store)
    with pytest.raises(WorkbenchError, match=match) as caught:
        bundle_import.import_bundle(store, io.BytesIO(data), name="class.zip")
    message = str(caught.value)
    assert "\n" not in message and "Received: " in message, message
    assert store.list_runs() == [] and tree(store) == before
    assert store._conn().execute("SELECT COUNT(*) FROM metrics").fetchone() == (0,)
    assert store._conn().execute("SELECT COUNT(*) FROM interventions").fetchone() == (0,)


def test_round_trip_into_a_fresh_store(source, tmp_path, backend):  # (into SQLite and PostgreSQL)
    from workbench.train.trainer import load_run_model

    a, ids = source.store, source.ids
    b = RunStore(tmp_path / "b")
    report = bundle_import.import_bundle(b, io.BytesIO(source.data), name="class.zip")
    assert report.imported == ids and report.skipped == {} and report.bundle == "class.zip"
    assert [line.split()[:2] for line in report.text().splitlines()] == [["imported", i] for i in ids]
    assert source.summary.runs == ids and source.summary.files == len(entries(source.data))

    # The Compare page's source: every metric row, floats exact.
    def frame(store):
        return pd.concat([store.metrics(i) for i in sorted(ids)], ignore_index=True)
    assert len(frame(a)) > 20
    pd.testing.assert_frame_equal(frame(a), frame(b), check_exact=True)
    assert [i.to_dict() for i in interventions.history(a, ids)] == [i.to_dict() for i in interventions.history(b, ids)]
    assert len(interventions.history(b, ids[0])) == 2
    for run_id in ids:
        old, new = a.get_run(run_id), b.get_run(run_id)
        assert new.origin["bundle"] == "class.zip" and new.origin["exported"] > old.ended
        assert new.origin["imported"] >= new.origin["exported"] and old.origin is None
        same = {k: getattr(old, k) for k in bundles.RUN_FIELDS if k != "origin"}
        assert {k: getattr(new, k) for k in same} == same
        with np.load(a.runs_dir / run_id / "predictions.npz") as x, np.load(b.runs_dir / run_id / "predictions.npz") as y:
            assert x.files == y.files and x.files
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])
        shipped = {p.name for p in (b.runs_dir / run_id).iterdir()}
        assert {"config.json", "model.keras", "predictions.npz"} <= shipped and "tensorboard" not in shipped
        assert shipped == {p.name for p in (a.runs_dir / run_id).iterdir() if p.is_file()}
    assert (b.runs_dir / ids[0] / "adapter.npz").is_file()

    # The imported run rebuilds its model like a local one.
    original, imported = load_run_model(a.runs_dir / ids[0]), load_run_model(b.runs_dir / ids[0])
    rows = imported.inputs["test"][:8]
    np.testing.assert_array_equal(np.asarray(original.task_model.model.predict(rows, verbose=0)),
                                  np.asarray(imported.task_model.model.predict(rows, verbose=0)))


def test_import_twice_skips_what_is_already_here(source, tmp_path, backend):
    store = RunStore(tmp_path / "b")
    first = bundle_import.import_bundle(store, io.BytesIO(source.data), name="class.zip")
    assert first.imported == source.ids and first.skipped == {}
    rows = len(store.metrics(source.ids))
    again = bundle_import.import_bundle(store, io.BytesIO(source.data), name="class.zip")
    assert again.imported == [] and again.skipped == dict.fromkeys(source.ids, "already here")
    assert len(store.metrics(source.ids)) == rows and len(store.list_runs()) == 2
    assert all(line.startswith("skipped") and "already here" in line for line in again.text().splitlines())


def test_export_refuses_active_unknown_and_empty(tmp_path):
    store = RunStore(tmp_path / "a")
    running = store.create_run(small_image_config().to_dict(), "busy", status="running")
    with pytest.raises(WorkbenchError, match="still running: stop it or wait for it to end"):
        bundles.export_bundle(store, [running], tmp_path / "out.zip")
    store.update_run(running, status="paused")
    with pytest.raises(WorkbenchError, match="still paused"):
        bundles.export_bundle(store, [running], tmp_path / "out.zip")
    with pytest.raises(WorkbenchError, match="No run 20990101-000000-abcdef in this store"):
        bundles.export_bundle(store, ["20990101-000000-abcdef"], tmp_path / "out.zip")
    with pytest.raises(WorkbenchError, match="No runs to export"):
        bundles.export_bundle(store, [], tmp_path / "out.zip")
    assert not list(tmp_path.glob("*.zip*"))


def _evil(files, run_id):
    return {**files, f"runs/{run_id}/../../evil.txt": b"gotcha"}


def _absolute(files, run_id):
    return {**files, "/etc/evil.txt": b"gotcha"}


def _backslash(files, run_id):
    return {**files, f"runs\\{run_id}\\evil.txt": b"gotcha"}


def _drive(files, run_id):
    return {**files, "C:/evil.txt": b"gotcha"}


def _pickle(files, run_id):
    return {**files, f"runs/{run_id}/model.pkl": b"\x80\x04K\x01."}


def _object_npz(files, run_id):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"code": "runs when loaded"}], dtype=object))
    return {**files, f"runs/{run_id}/predictions.npz": buffer.getvalue()}


def _unknown_field(files, run_id):
    run = json.loads(files[f"runs/{run_id}/run.json"])
    return {**files, f"runs/{run_id}/run.json": json.dumps({**run, "colour": "red"}).encode()}


def _stray_layout(files, run_id):
    return {**files, f"runs/{run_id}/tensorboard/events.txt": b"x"}


def _bad_config(files, run_id):
    run = json.loads(files[f"runs/{run_id}/run.json"])
    run["config"]["warp_speed"] = 9
    return {**files, f"runs/{run_id}/run.json": json.dumps(run).encode()}


def _metric_columns(files, run_id):
    text = files[f"runs/{run_id}/metrics.csv"].decode().replace("step,epoch,key,value,wall", "step,key,value,wall", 1)
    return {**files, f"runs/{run_id}/metrics.csv": text.encode()}


def _intervention_field(files, run_id):
    rows = json.loads(files[f"runs/{run_id}/interventions.json"])
    rows[0]["priority"] = 1
    return {**files, f"runs/{run_id}/interventions.json": json.dumps(rows).encode()}


def _active(files, run_id):
    run = json.loads(files[f"runs/{run_id}/run.json"])
    return {**files, f"runs/{run_id}/run.json": json.dumps({**run, "status": "running"}).encode()}


def _missing_run(files, run_id):
    return {n: b for n, b in files.items() if not n.startswith(f"runs/{run_id}/")}


@pytest.mark.parametrize(("edit", "match"), [
    (_evil, "unsafe path"), (_absolute, "unsafe path"), (_backslash, "unsafe path"), (_drive, "unsafe path"),
    (_pickle, "contains a pickled object"), (_object_npz, "predictions.npz of .* contains a pickled object"),
    (_unknown_field, r"unknown field 'colour' in run.json of .*: this bundle comes from a newer workbench"),
    (_stray_layout, "not a file a bundle holds"), (_bad_config, "config this workbench cannot load.*warp_speed"),
    (_metric_columns, "must have exactly the columns step, epoch, key, value, wall"),
    (_intervention_field, "unknown field 'priority' in interventions.json"),
    (_active, "not a finished run"), (_missing_run, "manifest's runs do not match"),
])
def test_import_refuses(source, tmp_path, edit, match):
    files = edit(entries(source.data), source.ids[0])
    refused(RunStore(tmp_path / "b"), rezip(files), match)


def test_import_refuses_links_hash_mismatch_and_non_zips(source, tmp_path, backend):
    store = RunStore(tmp_path / "b")
    files = entries(source.data)
    link = f"runs/{source.ids[0]}/notes.txt"
    refused(store, rezip({**files, link: b"/etc/passwd"}, links=(link,)), "symbolic link")
    tampered = {**files, f"runs/{source.ids[1]}/config.json": files[f"runs/{source.ids[1]}/config.json"] + b" "}
    refused(store, rezip(tampered, manifest=False), "does not match the sha256 and size its manifest gives")
    refused(store, b"not a zip at all", "not a readable zip")
    refused(store, rezip({n: b for n, b in files.items() if n != "manifest.json"}, manifest=False), "no manifest")
    manifest = {**json.loads(files["manifest.json"]), "version": 2}
    refused(store, rezip({**files, "manifest.json": json.dumps(manifest).encode()}), "not a version-1 workbench bundle")


def test_import_refuses_an_entry_declared_at_2_gib(source, tmp_path):
    name = f"runs/{source.ids[0]}/metrics.csv"
    data = patch_declared_size(source.data, name, 2**31)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo(name).file_size == 2**31  # (the patch is what a reader sees)
    refused(RunStore(tmp_path / "b"), data, "would unpack to 2048 MiB, more than the 512 MiB")


def test_import_stops_reading_an_entry_whose_header_lies_small(source, tmp_path, monkeypatch):
    sizes = {n: len(b) for n, b in entries(source.data).items()}
    largest = max(sizes, key=sizes.get)
    cap = max(s for n, s in sizes.items() if n != largest)
    assert sizes[largest] > cap
    monkeypatch.setattr(bundle_import, "MAX_ENTRY_BYTES", cap)  # the data is bigger than the cap; its header says 100
    refused(RunStore(tmp_path / "b"), patch_declared_size(source.data, largest, 100),
            "holds more than the 100 bytes its zip header declares")


def test_intervention_fields_are_the_dataclass_fields():
    from dataclasses import fields

    assert list(bundles.INTERVENTION_FIELDS) == [f.name for f in fields(interventions.Intervention)]


def test_export_to_a_file_and_origin_text(source, tmp_path):
    path = tmp_path / "class.zip"
    summary = bundles.export_bundle(source.store, source.ids[:1], path)
    assert summary.runs == source.ids[:1] and path.is_file() and not list(tmp_path.glob(".*part"))
    assert f"to {path}" in summary.text()
    store = RunStore(tmp_path / "b")
    report = bundle_import.import_bundle(store, path)
    record = store.get_run(source.ids[0])
    assert report.imported == source.ids[:1] and record.origin["bundle"] == "class.zip"
    assert bundles.origin_text(record).startswith("imported from class.zip on ")
    assert bundles.origin_text(source.store.get_run(source.ids[0])) is None
    names = entries(path.read_bytes())
    card = json.loads(names[f"runs/{source.ids[0]}/model_card.json"])
    assert card["name"] == "mnist-cnn" and card["layer_groups"]
    assert not any("tensorboard" in n for n in names)


def _panel_page(runs_dir: str, selected: list[str]) -> None:
    from pages._bundles import bundle_panel
    from workbench.runs import RunStore

    bundle_panel(RunStore(runs_dir), selected)


def test_panel_offers_finished_runs_and_imports_an_upload_once(source, tmp_path):
    from streamlit.testing.v1 import AppTest

    ids = source.ids
    mine = AppTest.from_function(_panel_page, args=(str(source.store.runs_dir), [ids[1], "20990101-000000-abcdef"]),
                                 default_timeout=30).run()
    assert not mine.exception and mine.multiselect(key="bundle_runs").value == [ids[1]]
    assert set(mine.multiselect(key="bundle_runs").options) >= {f"{source.store.get_run(i).name} · {i}" for i in ids}
    assert [b.label for b in mine.get("download_button")] == ["Download 1 run(s) as a zip"]
    from pages._bundles import _zip

    assert entries(_zip(source.store, ids[1:]))["manifest.json"]  # what the button's callable returns

    target = tmp_path / "b"
    at = AppTest.from_function(_panel_page, args=(str(target), []), default_timeout=30).run()
    assert not at.exception and not at.multiselect and not at.success
    at.file_uploader(key="bundle_upload").upload("class.zip", source.data, "application/zip").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [line.split()[:2] for line in at.success[0].value.split("  \n")] == [["imported", i] for i in ids]
    assert len(at.multiselect(key="bundle_runs").options) == 2  # the imported runs are offered at once
    store = RunStore(target)
    rows = len(store.metrics(ids))
    at.run()  # a rerun with the same file: shown again, not imported again
    assert "already here" not in at.success[0].value and len(store.metrics(ids)) == rows

    at.file_uploader(key="bundle_upload").upload("bad.zip", b"not a zip", "application/zip").run()
    assert "not a readable zip" in at.error[0].value and not at.success


def test_a_stopped_runs_checkpoint_stays_home(source, tmp_path):
    """A bundle carries results, not a run to continue elsewhere: no checkpoint goes out, and none comes in."""
    run_dir = source.store.runs_dir / source.ids[1]
    (run_dir / "checkpoint.npz").write_bytes(b"not shared")
    try:
        bundles.export_bundle(source.store, source.ids[1:], tmp_path / "x.zip")
        names = entries((tmp_path / "x.zip").read_bytes())
    finally:
        (run_dir / "checkpoint.npz").unlink()
    assert not any("checkpoint" in n for n in names)
    buffer = io.BytesIO()
    np.savez(buffer, v0=np.zeros(3))
    files = {**entries(source.data), f"runs/{source.ids[1]}/checkpoint.npz": buffer.getvalue()}
    refused(RunStore(tmp_path / "b"), rezip(files), "checkpoint.npz, which is not a file a bundle holds")
