"""Run bundles: finished runs exported as one .zip and imported into another workbench.

Why a zip of plain files: a teacher hands a class a set of runs to compare, a researcher moves runs
between machines; the receiving side must be able to read every byte without trusting the sender.
So a bundle holds only JSON, CSV, text and array files whose names follow one fixed layout:

    manifest.json                     {"format", "version", "created", "runs": [ids], "files": {path: {size, sha256}}}
    runs/<run_id>/run.json            the run row (`RUN_FIELDS`), never progress/stop_requested/owner
    runs/<run_id>/metrics.csv         step, epoch, key, value, wall (floats as `repr`: exact round trip)
    runs/<run_id>/interventions.json  `interventions.history` as `Intervention.to_dict` rows
    runs/<run_id>/model_card.json     the built-in model's card (or a note that the model was a user's file)
    runs/<run_id>/<artifact>          config.json, adapter.npz, model.keras, predictions.npz, ...

The import, and every check of a bundle received, live in `runs.bundle_import`; this module holds the
layout, the caps both sides apply, and the export.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from workbench.errors import WorkbenchError, received
from workbench.runs import interventions
from workbench.runs.store import ACTIVE, RunRecord, RunStore

FORMAT, VERSION = "peft-workbench-bundle", 1
MAX_ENTRY_BYTES = 512 * 2**20  # one unpacked entry (a MiniLM export is ~90 MB)
MAX_TOTAL_BYTES = 2 * 2**30  # the whole bundle, unpacked
MAX_ENTRIES = 10_000
MAX_RATIO, RATIO_FROM = 200, 2**20  # a zip bomb: entries over 1 MiB that unpack to over 200x their packed size
CHUNK = 2**20
ARTIFACT_SUFFIXES = (".json", ".npz", ".keras", ".csv", ".txt")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill")
OWN_FILES = ("run.json", "metrics.csv", "interventions.json", "model_card.json")  # the bundle's, not artifacts
METRIC_COLUMNS = ["step", "epoch", "key", "value", "wall"]
# A stopped run's epoch checkpoint (`train.checkpoint.FILE`, and its temporary name) stays home: a bundle
# carries results to compare, not a run to continue elsewhere, and the checkpoint can be larger than the rest.
NOT_SHARED = ("checkpoint.npz", "checkpoint.tmp.npz")
# run.json's fields and their types ("?": may be null); the first seven are required.
RUN_FIELDS = {"id": "str", "name": "str", "created": "num", "updated": "num", "status": "str", "config": "dict",
              "final_metrics": "dict", "device": "str?", "trainable_params": "int?", "total_params": "int?",
              "error": "str?", "error_step": "int?", "started": "num?", "ended": "num?", "origin": "dict?"}
INTERVENTION_FIELDS = {"run_id": "str", "seq": "int", "requested": "num", "kind": "str", "args": "dict",
                       "source": "str?", "step": "int?", "applied": "num?", "outcome": "str?"}
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
AGAIN = "ask for a fresh export (`workbench runs export ID... --zip FILE`)"


@dataclass
class BundleSummary:
    dest: str
    runs: list[str]
    files: int
    size: int  # unpacked bytes

    def text(self) -> str:
        return f"exported {len(self.runs)} run(s), {self.files} files ({self.size / 2**20:.1f} MiB) to {self.dest}"


def refuse(problem: str, fix: str, **got: Any) -> NoReturn:
    raise WorkbenchError(f"{problem}: {fix}. {received(**got)}")


# -- export ---------------------------------------------------------------------------------------
def export_bundle(store: RunStore, run_ids: list[str], dest: Path | BinaryIO) -> BundleSummary:
    """Write the finished runs `run_ids` into one zip at `dest` (a path, written whole or not at all)."""
    if not run_ids:
        refuse("No runs to export", "name at least one run id (see `workbench runs list`)", run_ids=run_ids)
    records = []
    for run_id in dict.fromkeys(run_ids):
        record = store.get_run(run_id)
        if record is None:
            refuse(f"No run {run_id} in this store", "copy an id from `workbench runs list`", run_id=run_id)
        if record.status in ACTIVE:
            refuse(f"Run {run_id} is still {record.status}", "stop it or wait for it to end, then export it",
                    run_id=run_id, status=record.status)
        records.append(record)
    artifacts = {r.id: _artifacts(store.runs_dir / r.id) for r in records}
    sizes = [p.stat().st_size for paths in artifacts.values() for p in paths]
    if max(sizes, default=0) > MAX_ENTRY_BYTES or sum(sizes) > MAX_TOTAL_BYTES:
        refuse("These runs are too large for one bundle (a file over 512 MiB or 2 GiB in all)",
                "export fewer runs at a time", total_mib=sum(sizes) // 2**20)
    if not isinstance(dest, str | Path):
        return _write_bundle(store, records, artifacts, dest, getattr(dest, "name", None) or "the stream")
    dest = Path(dest)
    part = dest.with_name(f".{dest.name}.part")
    try:
        with part.open("wb") as out:
            summary = _write_bundle(store, records, artifacts, out, str(dest))
        os.replace(part, dest)
        return summary
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            refuse(f"Cannot write the bundle ({exc.strerror or exc})", "choose a writable file", zip=str(dest))
        raise


def _artifacts(run_dir: Path) -> list[Path]:
    """The run folder's own files: plain files (no links, no tensorboard/, no checkpoint) with a known suffix."""
    if not run_dir.is_dir():
        return []
    return [p for p in sorted(run_dir.iterdir()) if p.suffix in ARTIFACT_SUFFIXES and p.is_file()
            and not p.is_symlink() and NAME.match(p.name) and p.name not in (*OWN_FILES, *NOT_SHARED)]


def _write_bundle(store: RunStore, records: list[RunRecord], artifacts: dict[str, list[Path]], out: BinaryIO,
                  dest: str) -> BundleSummary:
    files: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for record in records:
            base = f"runs/{record.id}/"
            rows = [i.to_dict() for i in interventions.history(store, record.id)]
            own = {"run.json": {k: getattr(record, k) for k in RUN_FIELDS}, "interventions.json": rows,
                   "model_card.json": model_card(record.config.get("model"))}
            for name, value in own.items():
                files[base + name] = _put(zf, base + name, json.dumps(value, indent=1).encode())
            files[base + "metrics.csv"] = _put(zf, base + "metrics.csv", _metrics_csv(store, record.id))
            for path in artifacts[record.id]:
                files[base + path.name] = _put(zf, base + path.name, path)
        manifest = {"format": FORMAT, "version": VERSION, "created": time.time(), "runs": [r.id for r in records],
                    "files": files}
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    return BundleSummary(dest, [r.id for r in records], len(files) + 1, sum(f["size"] for f in files.values()))


def _put(zf: zipfile.ZipFile, name: str, source: bytes | Path) -> dict[str, Any]:
    """Write one entry, hashing as it goes; stored uncompressed where deflate would look like a zip bomb."""
    digest, size = hashlib.sha256(), 0
    info = zipfile.ZipInfo(name, time.localtime()[:6])
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.compress_type = zipfile.ZIP_STORED if _packs_too_well(source) else zipfile.ZIP_DEFLATED
    with zf.open(info, "w") as out, (io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")) as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def _packs_too_well(source: bytes | Path) -> bool:
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    if size <= RATIO_FROM:
        return False
    packer, packed = zlib.compressobj(), 0
    with io.BytesIO(source) if isinstance(source, bytes) else source.open("rb") as src:
        while chunk := src.read(CHUNK):
            packed += len(packer.compress(chunk))
    return size > MAX_RATIO * (packed + len(packer.flush()))


def _metrics_csv(store: RunStore, run_id: str) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    number = lambda v: "" if v is None or v != v else repr(float(v))  # noqa: E731 (NULL/NaN: empty)
    for step, epoch, key, value, wall in store.metrics(run_id)[METRIC_COLUMNS].itertuples(index=False):
        writer.writerow([int(step), int(epoch), key, number(value), number(wall)])
    return text.getvalue().encode()


def model_card(model: str | None) -> dict[str, Any]:
    """The built-in model's card as a dict; for a user's model file, a note that the bundle lacks it."""
    from workbench.models.registry import MODELS, get_model_card  # (loads Keras: only when exporting)

    if model in MODELS:
        return get_model_card(model).to_dict()
    return {"name": model, "builtin": False, "note": "a model file of the person who trained this run; the "
            "bundle does not hold it, so rebuilding the model needs that file at the same path"}


def origin_text(record: RunRecord) -> str | None:
    """'imported from <bundle> on <date>' for an imported run (None for a local one)."""
    origin = record.origin or {}
    if not isinstance(origin.get("imported"), int | float):
        return None
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(origin["imported"]))
    return f"imported from {origin.get('bundle') or 'a bundle'} on {day}"
