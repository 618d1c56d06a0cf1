"""A disk that stops taking writes mid-run ends the run `failed` with the reason; nothing hangs (issue 12.1).

Three ways to make writes fail, each as real as the case allows:

- a full disk: a 210 MiB tmpfs mounted as the runs directory and filled mid-run. Mounting needs root
  (CAP_SYS_ADMIN); where the tests run without it, that test is skipped and the two below still run.
- a file-size limit (`RLIMIT_FSIZE`), set with `prlimit` on the running process that trains: every
  write of that process to a regular file then fails in the kernel (EFBIG; Python ignores SIGXFSZ), as
  on a full disk, while the test process can still read and write the same store. No root needed.
  This is how an engine worker (the app's process executor) and the CLI process are made to fail.
- an injected error: the store's write statements raise `sqlite3.OperationalError("database or disk
  is full")`, for the case no real disk produces on demand: a process that lives on after even the
  run's `failed` status could not be written (the run manager must still know the outcome).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import small_image_config

from workbench.runs import RunManager, RunStore
from workbench.runs import store as store_module

ROOT = Path(__file__).resolve().parents[1]
LONG = dict(method="full", epochs=200, batch_size=4, limit_per_class=None, export_model=False)
CLI_LONG = ["--model", "mnist-cnn", "--data", "digits", "--method", "full", "--epochs", "200", "--batch-size", "4",
            "--no-export-model"]


def _wait_step(step_of, step: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (step_of() or 0) >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run never reached step {step}")


def _stored_step(db: Path) -> int:
    """The highest recorded step, read with a plain read-only connection (no store open, no recovery)."""
    if not db.exists():
        return 0
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT MAX(step) FROM metrics WHERE key = 'train/loss'").fetchone()[0] or 0
    return 0


def _integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


@contextlib.contextmanager
def _file_size_limit(pid: int):
    """Every write of process `pid` to a regular file fails from now on (until the block ends)."""
    before = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, before[1]))
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            resource.prlimit(pid, resource.RLIMIT_FSIZE, before)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=210m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}): the file-size-limit tests "
                    "below fail writes in the kernel the same way")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> None:
    chunk = b"\0" * 2**20
    with (disk / "filler").open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_disk_that_fills_mid_run_fails_the_run_with_the_reason(small_disk):
    manager = RunManager(small_disk)
    run_id = manager.start(small_image_config(**LONG))
    _wait_step(lambda: _stored_step(manager.store.path), 3)
    _fill(small_disk)
    filled = time.time()
    assert manager.wait(run_id, timeout=30) == "failed"
    assert time.time() - filled < 30
    record = manager.store.get_run(run_id)  # the reserve made room for the status: the store has it
    assert record.status == "failed" and record.ended is not None, record
    assert "disk is full" in record.error and "--runs-dir" in record.error, record.error
    assert record.error_step >= 3
    assert _integrity(manager.store.path) == "ok"
    steps = manager.store.metrics(run_id, keys=["train/loss"]).step.tolist()
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 3  # what was recorded stays, in order
    assert not (small_disk / ".space-reserve").exists()

    (small_disk / "filler").unlink()
    RunStore(small_disk)  # with room again, the next open puts the reserve back
    assert (small_disk / ".space-reserve").stat().st_size == 2**20


def test_when_not_even_the_end_can_be_written_the_manager_still_knows_it(runs_dir, monkeypatch):
    full = threading.Event()
    for name in ("execute", "executemany"):
        original = getattr(store_module._Transactional, name)

        def failing(self, sql, *args, _original=original):
            if full.is_set() and sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                raise sqlite3.OperationalError("database or disk is full")
            return _original(self, sql, *args)

        monkeypatch.setattr(store_module._Transactional, name, failing)
    manager = RunManager(runs_dir)
    run_id = manager.start(small_image_config(**LONG))
    _wait_step(lambda: (manager.snapshot(run_id) or {}).get("step"), 3)
    full.set()
    filled = time.time()
    assert manager.wait(run_id, timeout=30) == "failed"  # not "running": a polling caller always gets an end
    assert time.time() - filled < 30
    assert manager.store.get_run(run_id).status == "running"  # the store could not be told
    assert manager.status(run_id) == "failed"
    record = manager.record(run_id)
    assert record.status == "failed" and record.unrecorded and record.ended >= filled - 1
    assert "disk is full" in record.error and "--runs-dir" in record.error, record.error
    assert record.error_step >= 3
    assert [r.status for r in manager.list() if r.id == run_id] == ["failed"]

    full.clear()  # space again: the next `record` writes what only memory knew
    record = manager.record(run_id)
    assert not record.unrecorded and manager.store.get_run(run_id).status == "failed"
    assert "disk is full" in manager.store.get_run(run_id).error


def test_an_engine_worker_that_cannot_write_reports_to_its_supervisor(tmp_path):
    """The app's executor: the worker cannot write (its `ulimit -f`), so the app's process records the end."""
    manager = RunManager(tmp_path / "runs", executor="process")
    try:
        run_id = manager.start(small_image_config(**LONG))
        _wait_step(lambda: (manager.snapshot(run_id) or {}).get("step"), 3)
        [worker] = [pid for slot, pid in manager.pool.pids().items() if slot.endswith(":busy")]
        with _file_size_limit(worker):
            limited = time.time()
            assert manager.wait(run_id, timeout=60) == "failed"
            assert time.time() - limited < 60
            record = manager.store.get_run(run_id)  # written by this process, for the worker
            assert record.status == "failed" and not manager.record(run_id).unrecorded, record
            assert "file-size limit" in record.error and "--runs-dir" in record.error, record.error
            assert record.ended >= limited - 1 and record.error_step >= 3
            assert worker in manager.pool.pids().values()  # the worker lives on: it reported, it did not die
        after = manager.start(small_image_config(epochs=1))  # its disk writable again, it trains the next run
        assert manager.wait(after, timeout=180) == "completed", manager.store.get_run(after).error
        assert _integrity(manager.store.path) == "ok"
    finally:
        manager.close()


def _cli_until_writes_fail(runs_dir: Path) -> tuple[subprocess.CompletedProcess, str, float]:
    """Start `workbench train`, let it record a few steps, then forbid its writes: (result, run id, when)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_EXECUTOR": "thread"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "--runs-dir", str(runs_dir), "train", *CLI_LONG],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    def step() -> int:
        if proc.poll() is not None:
            raise AssertionError(f"the CLI ended before its writes failed: {proc.stderr.read()[-2000:]}")
        return _stored_step(runs_dir / "workbench.db")

    try:
        _wait_step(step, 3)
        with contextlib.closing(sqlite3.connect(runs_dir / "workbench.db")) as conn:
            (run_id,) = conn.execute("SELECT id FROM runs").fetchone()
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)[1]))
        limited = time.time()
        stdout, stderr = proc.communicate(timeout=90)  # spinning forever was the bug: it must exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), run_id, limited


@pytest.fixture(scope="module")
def cli_failure(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("cli-disk") / "runs"
    return (runs_dir, *_cli_until_writes_fail(runs_dir))


def test_the_cli_exits_non_zero_when_its_writes_fail_mid_run(cli_failure):
    runs_dir, done, run_id, limited = cli_failure
    assert done.returncode == 1, done.stderr[-2000:]
    # No raw store error and no thread's traceback (TensorBoard's writer thread included): the one-line reason only.
    assert "sqlite3." not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    # The CLI process could write nothing at the end, so it left the run `running`; the next open
    # marks it `interrupted`, ended at its last record (before the limit), not at this later open.
    time.sleep(1.5)
    record = RunStore(runs_dir).get_run(run_id)
    assert record.status == "interrupted" and "process running it ended" in record.error, record
    assert record.started < record.ended <= limited + 1.0, (record.ended, limited)


def test_the_cli_says_why_the_run_failed_when_the_store_could_not_record_it(cli_failure):
    _runs_dir, done, run_id, _limited = cli_failure
    assert f"run {run_id} failed" in done.stderr and "file-size limit" in done.stderr, done.stderr[-2000:]
    assert "could not record" in done.stderr
