"""Importing run bundles (`runs.bundles` has the layout): check everything, then add the runs.

Why the import reads everything before it writes: a refusal must leave the store as it was. Entry names,
sizes (declared and, since a zip header can lie, while reading), hashes, arrays (no pickles: an object
array would run code when loaded) and every run's rows are checked while the files are staged in a
private folder under the runs directory; only then are run rows inserted and files renamed into place.
An imported run keeps its id and is marked as imported (`origin`: the bundle's name, when it was
exported and imported); a run id already in the store is skipped, never replaced.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as fmt

from workbench.config import TrainConfig
from workbench.errors import WorkbenchError
from workbench.runs import interventions
from workbench.runs.bundles import (
    AGAIN,
    ARTIFACT_SUFFIXES,
    CHUNK,
    FORMAT,
    INTERVENTION_FIELDS,
    MAX_ENTRIES,
    MAX_ENTRY_BYTES,
    MAX_RATIO,
    MAX_TOTAL_BYTES,
    METRIC_COLUMNS,
    NAME,
    NOT_SHARED,
    OWN_FILES,
    PICKLE_SUFFIXES,
    RATIO_FROM,
    RUN_FIELDS,
    VERSION,
    refuse,
)
from workbench.runs.store import ACTIVE, MIN_FREE_BYTES, STATUSES, RunStore


@dataclass
class ImportReport:
    bundle: str
    imported: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # run id -> why
    names: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """One line per run, in the bundle's order."""
        return "\n".join(f"imported {i}  {' '.join(self.names.get(i, '').split())}".rstrip() if i in self.imported
                         else f"skipped  {i}  {self.skipped[i]}" for i in self.names)


@dataclass
class _Staged:
    run: dict[str, Any]
    metrics: list[tuple]
    interventions: list[dict[str, Any]]
    artifacts: list[str]


def import_bundle(store: RunStore, source: Path | BinaryIO, *, name: str | None = None) -> ImportReport:
    """Check the whole bundle, then add its runs; a run id already in the store is skipped, not replaced."""
    bundle = name or (Path(source).name if isinstance(source, str | Path) else getattr(source, "name", None))
    bundle = os.path.basename(str(bundle or "bundle.zip"))[:120]
    stage = Path(tempfile.mkdtemp(prefix=".bundle-import-", dir=store.runs_dir))
    try:
        created, runs = _validate(store, source, stage, bundle)
        report = ImportReport(bundle)
        origin = {"imported": time.time(), "bundle": bundle, "exported": created}
        for run in runs:
            report.names[run.run["id"]] = run.run["name"]
            _add(store, run, stage / run.run["id"], origin, report)
        return report
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _add(store: RunStore, staged: _Staged, files: Path, origin: dict[str, Any], report: ImportReport) -> None:
    """Insert the run row first (its primary key claims the id), then its rows and files; undone on failure."""
    r, run_id = staged.run, staged.run["id"]
    dest = store.runs_dir / run_id
    if store.get_run(run_id) is not None:
        report.skipped[run_id] = "already here"
        return
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        report.skipped[run_id] = f"its folder {dest} exists without a run in the store: move it away and import again"
        return
    try:
        with store._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, created, updated, status, config, device, trainable_params, total_params,"
                " final_metrics, error, error_step, started, ended, owner_pid, owner_start, origin)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                (run_id, r["name"], r["created"], r["updated"], r["status"], json.dumps(r["config"]), r.get("device"),
                 r.get("trainable_params"), r.get("total_params"), json.dumps(r["final_metrics"]), r.get("error"),
                 r.get("error_step"), r.get("started"), r.get("ended"), json.dumps(origin)))
    except store.integrity_errors:  # another import added it a moment ago
        report.skipped[run_id] = "already here"
        return
    try:
        store.append_metrics(staged.metrics)
        interventions.insert_rows(store, staged.interventions)
        dest.mkdir(exist_ok=True)
        for artifact in staged.artifacts:
            os.replace(files / artifact, dest / artifact)  # staged under a temporary folder: one rename each
    except BaseException:
        store.delete_run(run_id)
        shutil.rmtree(dest, ignore_errors=True)
        raise
    report.imported.append(run_id)


def _validate(store: RunStore, source: Path | BinaryIO, stage: Path, bundle: str) -> tuple[float, list[_Staged]]:
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        refuse(f"{bundle} is not a readable zip ({exc})", "choose a bundle exported by the workbench", bundle=bundle)
    with zf:
        entries = _check_entries(zf.infolist(), bundle)
        manifest = _manifest(zf, entries.pop("manifest.json", None), bundle)
        for odd in sorted(set(manifest["files"]) ^ set(entries))[:1]:
            refuse(f"The manifest of {bundle} does not list the files the zip holds ({odd})", AGAIN, file=odd)
        by_run = {n.split("/")[1] for n in entries}
        if by_run != set(manifest["runs"]) or len(manifest["runs"]) != len(by_run):
            refuse(f"The manifest's runs do not match the runs in {bundle}", AGAIN, runs=manifest["runs"])
        store.check_space(sum(i.file_size for i in entries.values()) + MIN_FREE_BYTES)
        for entry_name, info in entries.items():
            target = stage / entry_name.removeprefix("runs/")
            target.parent.mkdir(exist_ok=True)
            with target.open("wb") as out:
                size, sha = _read(zf, info, out.write)
            if {"size": size, "sha256": sha} != {k: manifest["files"][entry_name].get(k) for k in ("size", "sha256")}:
                refuse(f"{entry_name} in {bundle} does not match the sha256 and size its manifest gives "
                        "(changed or damaged since export)", AGAIN, file=entry_name, sha256=sha)
    return manifest["created"], [_check_run(stage / run_id, run_id) for run_id in manifest["runs"]]


def _check_entries(infos: list[zipfile.ZipInfo], bundle: str) -> dict[str, zipfile.ZipInfo]:
    """Names (layout, no traversal or links) and declared sizes, before a byte is unpacked."""
    if len(infos) > MAX_ENTRIES:
        refuse(f"{bundle} holds {len(infos)} entries, more than {MAX_ENTRIES}", "split it into smaller bundles",
                entries=len(infos))
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        n = info.filename
        if n.startswith("/") or "\\" in n or re.match(r"^[A-Za-z]:", n) or ".." in n.split("/") or "\0" in n:
            refuse(f"{bundle} holds an entry with an unsafe path (absolute, '..', backslash or drive)", AGAIN, entry=n)
        if stat.S_ISLNK(info.external_attr >> 16):
            refuse(f"{bundle} holds a symbolic link", AGAIN, entry=n)
        if n.lower().endswith(PICKLE_SUFFIXES):
            refuse(f"{bundle} contains a pickled object ({n}), which could run code when loaded", AGAIN, entry=n)
        if info.is_dir() and (n == "runs/" or (n.count("/") == 2 and _is_id(n.split("/")[1]))):
            continue
        parts = n.split("/")
        layout = n == "manifest.json" or (len(parts) == 3 and parts[0] == "runs" and _is_id(parts[1]) and
                                          NAME.match(parts[2]) and parts[2].endswith(ARTIFACT_SUFFIXES)
                                          and parts[2] not in NOT_SHARED)
        if not layout:
            refuse(f"{bundle} holds {n}, which is not a file a bundle holds", AGAIN, entry=n)
        if n in entries:
            refuse(f"{bundle} holds {n} twice", AGAIN, entry=n)
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            refuse(f"{n} in {bundle} is encrypted or packed in an unknown way", AGAIN, entry=n)
        entries[n] = info
    _check_sizes(list(entries.values()), bundle)
    return entries


def _check_sizes(infos: list[zipfile.ZipInfo], where: str, ratio: bool = True) -> None:
    """Declared sizes against the caps. (Inside an .npz only the caps: `savez_compressed` packs padded
    text columns very well, and those entries are read, capped again, by zipfile itself.)"""
    for info in infos:
        if info.file_size > MAX_ENTRY_BYTES:
            refuse(f"{info.filename} in {where} would unpack to {info.file_size // 2**20} MiB, more than the "
                    f"{MAX_ENTRY_BYTES // 2**20} MiB an entry may hold", AGAIN, entry=info.filename, size=info.file_size)
        if ratio and info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            refuse(f"{info.filename} in {where} unpacks to over {MAX_RATIO}x its packed size (a zip bomb?)", AGAIN,
                    entry=info.filename, size=info.file_size, packed=info.compress_size)
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        refuse(f"{where} would unpack to {total // 2**20} MiB, more than {MAX_TOTAL_BYTES // 2**20} MiB",
                "split it into smaller bundles", size=total)


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, sink: Any) -> tuple[int, str]:
    """Unpack one entry in chunks, stopping as soon as it holds more than its header declares (never more
    than the caps: the declared size passed `_check_sizes`). zipfile itself would cut the data at the
    declared size and report a bad CRC, so the entry is opened as if one chunk longer to see a lying header."""
    limit = min(info.file_size, MAX_ENTRY_BYTES)
    probe = copy.copy(info)
    probe.file_size = limit + CHUNK + 1  # (the read that passes `limit` cannot reach this: no early CRC check)
    digest, size = hashlib.sha256(), 0
    try:
        with zf.open(probe) as src:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    refuse(f"{info.filename} holds more than the {limit} bytes its zip header declares (a crafted "
                            "or damaged zip)", AGAIN, entry=info.filename, declared=info.file_size)
                digest.update(chunk)
                sink(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        refuse(f"{info.filename} cannot be unpacked ({exc})", AGAIN, entry=info.filename)
    return size, digest.hexdigest()


def _manifest(zf: zipfile.ZipFile, info: zipfile.ZipInfo | None, bundle: str) -> dict[str, Any]:
    if info is None:
        refuse(f"{bundle} has no manifest.json, so it is not a workbench bundle", AGAIN, bundle=bundle)
    out = io.BytesIO()
    _read(zf, info, out.write)
    m = _json(out.getvalue(), "manifest.json")
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("version") != VERSION:
        got = m if not isinstance(m, dict) else {k: m.get(k) for k in ("format", "version")}
        refuse(f"{bundle} is not a version-{VERSION} workbench bundle", "export it with a workbench of this "
                "version, or update this one", manifest=got)
    ok = (_typed(m.get("created"), "num") and isinstance(m.get("runs"), list) and isinstance(m.get("files"), dict)
          and all(_is_id(r) for r in m["runs"]) and all(isinstance(f, dict) for f in m["files"].values()))
    if not ok:
        refuse(f"The manifest of {bundle} is malformed (created, runs or files)", AGAIN, runs=m.get("runs"))
    return m


def _check_run(folder: Path, run_id: str) -> _Staged:
    """Every file of one staged run: its row, metrics, interventions, config and arrays."""
    names = sorted(p.name for p in folder.iterdir())
    missing = [n for n in OWN_FILES[:3] if n not in names]
    if missing:
        refuse(f"Run {run_id} in the bundle lacks {missing[0]}", AGAIN, run_id=run_id)
    run = _json((folder / "run.json").read_bytes(), f"run.json of {run_id}")
    _fields(run, RUN_FIELDS, 7, f"run.json of {run_id}")
    if run["id"] != run_id or run["status"] not in STATUSES or run["status"] in ACTIVE:
        refuse(f"run.json of {run_id} is not a finished run of that id", AGAIN, id=run["id"], status=run["status"])
    configs = [run["config"]]
    if "config.json" in names:  # what `load_run_model` rebuilds the model from
        configs.append(_json((folder / "config.json").read_bytes(), f"config.json of {run_id}"))
    for config in configs:
        try:
            TrainConfig.from_dict(config)
        except Exception as exc:  # noqa: BLE001 - ConfigError says what; anything else is as bad
            raise WorkbenchError(f"Run {run_id} in the bundle has a config this workbench cannot load (update it "
                                 f"if the bundle comes from a newer one): {exc}") from None
    rows = _json((folder / "interventions.json").read_bytes(), f"interventions.json of {run_id}")
    if not isinstance(rows, list):
        refuse(f"interventions.json of {run_id} is not a list", AGAIN, run_id=run_id)
    for row in rows:
        _fields(row, INTERVENTION_FIELDS, 5, f"interventions.json of {run_id}")
        if row["run_id"] != run_id or row["kind"] not in interventions.KINDS:
            refuse(f"interventions.json of {run_id} holds a row of another run or kind", AGAIN, row=row)
    if len({r["seq"] for r in rows}) != len(rows):
        refuse(f"interventions.json of {run_id} repeats a seq", AGAIN, run_id=run_id)
    for name in names:
        if name.endswith((".npz", ".keras")):
            _check_arrays(folder / name, f"{name} of {run_id}")
        elif name.endswith(".json"):
            _json((folder / name).read_bytes(), f"{name} of {run_id}")
    return _Staged(run, _metric_rows(folder / "metrics.csv", run_id), rows, [n for n in names if n not in OWN_FILES])


def _metric_rows(path: Path, run_id: str) -> list[tuple]:
    """metrics.csv as `append_metrics` rows (an empty value is NULL; wall is a finite time)."""
    rows: list[tuple] = []
    try:
        with path.open(encoding="utf-8", newline="") as text:
            reader = csv.reader(text)
            header = next(reader, None)
            for step, epoch, key, value, wall in reader if header == METRIC_COLUMNS else ():
                rows.append((run_id, int(step), int(epoch), key, float(value) if value else None, float(wall)))
                if not math.isfinite(rows[-1][-1]):
                    raise ValueError(f"wall {wall!r} is not a time")
    except (ValueError, csv.Error, UnicodeDecodeError) as exc:
        refuse(f"metrics.csv of {run_id} has a bad row near line {len(rows) + 2} ({exc})", AGAIN, run_id=run_id)
    if header != METRIC_COLUMNS:
        refuse(f"metrics.csv of {run_id} must have exactly the columns {', '.join(METRIC_COLUMNS)}", AGAIN,
                header=header)
    return rows


def _check_arrays(path: Path, what: str) -> None:
    """.npz and .keras files are zips too: caps again, and no pickle inside (arrays read with allow_pickle=False)."""
    try:
        with zipfile.ZipFile(path) as inner:
            _check_sizes(inner.infolist(), what, ratio=False)
            if path.suffix == ".npz":
                for info in inner.infolist():
                    with inner.open(info) as f:  # the header first: a lying shape must not allocate memory
                        one = np.lib.format.read_magic(f) == (1, 0)
                        shape, _, dtype = (fmt.read_array_header_1_0 if one else fmt.read_array_header_2_0)(f)
                    if dtype.hasobject:
                        refuse(f"{what} contains a pickled object (an object array), which could run code when "
                                "loaded", AGAIN, file=what)
                    if math.prod(shape) * dtype.itemsize > info.file_size:
                        refuse(f"{what} has an array header larger than its data", AGAIN, file=what)
                with np.load(path, allow_pickle=False) as arrays:  # object arrays (pickles) raise here
                    for key in arrays.files:
                        arrays[key]
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read is a refusal with its reason
        word = "contains a pickled object" if "allow_pickle" in str(exc) else "cannot be read"
        refuse(f"{what} {word} ({type(exc).__name__}: {exc})", AGAIN, file=what)


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        refuse(f"{what} in the bundle is not valid JSON ({exc})", AGAIN, file=what)


def _fields(obj: Any, spec: dict[str, str], required: int, what: str) -> None:
    if not isinstance(obj, dict):
        refuse(f"{what} is not a JSON object", AGAIN, file=what)
    for key in obj:
        if key not in spec:
            refuse(f"unknown field {key!r} in {what}", "this bundle comes from a newer workbench; update this one "
                    "to import it", field=key)
    for key, kind in spec.items():
        if (key in list(spec)[:required] and key not in obj) or not _typed(obj.get(key), kind):
            refuse(f"{what} has no valid {key!r} (expected {kind.rstrip('?')})", AGAIN, **{key: obj.get(key)})


def _typed(value: Any, kind: str) -> bool:
    if value is None:
        return kind.endswith("?")
    kind = kind.rstrip("?")
    if kind == "num":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "dict": dict}[kind])


def _is_id(value: Any) -> bool:
    try:
        return RunStore.check_id(value) == value
    except WorkbenchError:
        return False
