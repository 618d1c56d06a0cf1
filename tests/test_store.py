"""The run store survives kill -9: the run shows `interrupted` with its metrics after restart, and its
wall time ends at its last record, not when the store was next opened.

Every test here runs on both back ends (the `backend` fixture: SQLite, and a real PostgreSQL server
started for the session), since the store's SQL and its semantics must be the same on both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from workbench.errors import WorkbenchError
from workbench.runs import RunStore, interventions


@pytest.fixture
def store(runs_dir, backend):
    return RunStore(runs_dir)

SCRIPT = """
import sys
from workbench.config import TrainConfig
from workbench.runs import RunManager
manager = RunManager(sys.argv[1])
run_id = manager.start(TrainConfig(model="mnist-cnn", data="mnist-5k", method="full", epochs=100, batch_size=8,
                                   export_model=False))
print(run_id, flush=True)
manager.wait(run_id)
"""


def test_kill_9_leaves_interrupted_run_with_metrics(runs_dir, backend):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(runs_dir)], stdout=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        store = RunStore(runs_dir)
        deadline = time.time() + 120
        while len(store.metrics(run_id, keys=["train/loss"])) < 20:
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.2)
        seen = len(store.metrics(run_id, keys=["train/loss"]))
        time.sleep(1.2)  # one flush interval (<= 1 s) later, everything seen so far is on disk
        flushed = len(store.metrics(run_id, keys=["train/loss"]))
        assert store.get_run(run_id).status == "running"
    finally:
        killed = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(1.0)
    restarted = RunStore(runs_dir)
    record = restarted.get_run(run_id)
    assert record.status == "interrupted" and "process" in record.error
    assert record.started < record.ended <= killed  # its last record, not the moment of recovery
    kept = restarted.metrics(run_id, keys=["train/loss"])
    assert len(kept) >= flushed > seen - 1
    assert list(kept.step) == list(range(1, len(kept) + 1))

    # ... and the user starts a new run from the interrupted run's config.
    from workbench.cli import main

    assert main(["--runs-dir", str(runs_dir), "train", "--from-run", run_id, "--epochs", "1", "--max-rows", "300"]) == 0
    newest = restarted.list_runs()[0]
    assert newest.id != run_id and newest.status == "completed" and newest.config["model"] == "mnist-cnn"


def test_ids_are_checked_before_touching_paths(store):
    with pytest.raises(WorkbenchError, match="Not a run id"):
        store.run_dir("../../etc")
    run_id = store.create_run({"model": "x"}, "name with / and ..")
    assert store.run_dir(run_id).parent == store.runs_dir
    assert store.resolve_id(run_id[:15]) == run_id


def _orphan(store: RunStore, run_id: str) -> None:
    """Make `run_id`'s owner a process that no longer exists (this pid, another start time: a reused pid)."""
    with store._write() as conn:
        conn.execute("UPDATE runs SET owner_start = 'gone' WHERE id = ?", (run_id,))


def test_an_interrupted_run_ends_at_its_last_record_not_at_recovery(store):
    t0 = time.time() - 3600  # the process died an hour before the store was opened again
    by_metrics = store.create_run({"model": "x"}, "last sign: a metric row")
    store.update_run(by_metrics, status="running", started=t0)
    store.update_progress(by_metrics, {"step": 30, "started": t0 + 2.0, "written": t0 + 9.0})
    store.append_metrics([(by_metrics, s, 0, "train/loss", 1.0, 0.5 * s) for s in range(1, 31)])  # last: +2+15 s
    by_progress = store.create_run({"model": "x"}, "last sign: a progress snapshot")
    store.update_run(by_progress, status="running", started=t0)
    store.update_progress(by_progress, {"step": 4, "started": t0 + 2.0, "written": t0 + 40.0})
    store.append_metrics([(by_progress, s, 0, "train/loss", 1.0, 1.0 * s) for s in range(1, 5)])
    never_started = store.create_run({"model": "x"}, "queued when its process died", status="queued")
    for run_id in (by_metrics, by_progress, never_started):
        _orphan(store, run_id)

    reopened = RunStore(store.runs_dir)
    a, b, c = (reopened.get_run(i) for i in (by_metrics, by_progress, never_started))
    assert {a.status, b.status, c.status} == {"interrupted"}
    assert a.ended == pytest.approx(t0 + 17.0) and a.wall_s == pytest.approx(17.0)
    assert b.ended == pytest.approx(t0 + 40.0) and b.wall_s == pytest.approx(40.0)
    assert a.error_step == 30 and b.error_step == 4
    assert c.wall_s is None and c.ended == pytest.approx(c.created)
    assert "nearly full" not in a.error  # this disk has room: no hint about space


def test_a_run_orphaned_on_a_nearly_full_disk_says_so(store, monkeypatch):
    import shutil

    run_id = store.create_run({"model": "x"}, "died on a full disk", status="running")
    _orphan(store, run_id)
    usage = shutil.disk_usage(store.runs_dir)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2**20))
    error = RunStore(store.runs_dir).get_run(run_id).error
    assert "process running it ended" in error and "nearly full (1.0 MiB free" in error and "--runs-dir" in error


# -- both back ends: the same semantics ---------------------------------------------------------------------
def test_timestamps_and_large_integers_come_back_exactly(store):
    t = 1796427246.123456789  # a float64 wall time (a 4-byte REAL would round it to minutes)
    run_id = store.create_run({"model": "x"}, "exact")
    store.update_run(run_id, started=t, ended=t + 1e-6, trainable_params=2**40 + 1, stop_requested=t)
    record = store.get_run(run_id)
    assert (record.started, record.ended, record.trainable_params, record.stop_requested) == (t, t + 1e-6, 2**40 + 1, t)
    assert isinstance(record.created, float) and record.created == store.get_run(run_id).created
    store.append_metrics([(run_id, 1, 0, "train/loss", 0.1 + 0.2, t), (run_id, 2, 0, "train/loss", float("nan"), t)])
    frame = store.metrics(run_id)
    assert frame.wall.tolist() == [t, t] and frame.value.iloc[0] == 0.1 + 0.2 and frame.value.isna().iloc[1]
    assert frame.dtypes.astype(str).to_dict()["step"] == "int64" and frame.dtypes["wall"] == "float64"
    assert store._conn().execute("SELECT MAX(value), COUNT(*) FROM metrics").fetchone() == (0.1 + 0.2, 2)  # NaN: NULL
    assert store.metrics([]).empty and store.statuses([]) == {}


def test_stage_rows_and_like_patterns_keep_their_percent_signs(store):
    run_id = store.create_run({"model": "x"}, "stages")
    store.append_metrics([(run_id, s, 0, key, 1.0, float(s)) for s in (1, 2, 3) for key in ("train/loss", "trainable/a")])
    assert store.delete_metrics_after(run_id, 2) == 3  # step 3 (both keys) and the stage row at step 2
    assert store.metrics(run_id).key.tolist() == ["train/loss", "trainable/a", "train/loss"]  # insertion order
    assert store.resolve_id(run_id[:16]) == run_id


def test_concurrent_writer_threads_lose_nothing(store):
    run_ids = [store.create_run({"model": "x"}, f"writer {i}", status="running") for i in range(6)]
    errors: list[str] = []

    def write(run_id: str) -> None:
        try:
            for batch in range(20):
                store.append_metrics([(run_id, 10 * batch + k, 0, "train/loss", 1.0, time.time()) for k in range(10)])
                interventions.add(store, run_ids[0], "lr", {"scale": 0.5}, "test")  # all race for the next seq
                store.update_progress(run_id, {"step": 10 * batch + 9})
        except Exception as exc:  # noqa: BLE001 - collected: the assertion shows them
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(run_id,)) for run_id in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(len(store.metrics(r)) == 200 for r in run_ids)
    assert [i.seq for i in interventions.history(store, run_ids[0])] == list(range(1, 121))


WRITER = """
import sys
from workbench.runs import RunStore, interventions
store = RunStore(sys.argv[1])
run_id = store.create_run({"model": "x"}, "writer", status="running")
for batch in range(30):
    store.append_metrics([(run_id, 10 * batch + k, 0, "train/loss", 1.0, 0.5) for k in range(10)])
    interventions.add(store, sys.argv[2], "lr", {"scale": 0.5}, "test")
store.update_run(run_id, status="completed")
"""


def test_concurrent_writer_processes_lose_nothing(store):
    shared = store.create_run({"model": "x"}, "steered by all", status="running")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store.runs_dir), shared], stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    done = store.list_runs(["completed"])
    assert len(done) == 4 and all(len(store.metrics(r.id)) == 300 for r in done)
    assert [i.seq for i in interventions.history(store, shared)] == list(range(1, 121))
    assert store.get_run(shared).status == "running"  # its owner (this process) lives


def test_a_reader_is_not_blocked_by_an_open_write_transaction(store):
    run_id = store.create_run({"model": "x"}, "read while written", status="running")
    store.append_metrics([(run_id, 1, 0, "train/loss", 1.0, 0.1)])
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store._write() as conn:  # this thread's connection: a transaction held open
            conn.execute("UPDATE runs SET name = ? WHERE id = ?", ("renamed", run_id))
            conn.executemany("INSERT INTO metrics (run_id, step, epoch, key, value, wall) VALUES (?, ?, ?, ?, ?, ?)",
                             [(run_id, 2, 0, "train/loss", 0.5, 0.2)])
            writing.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(30)
        t = time.perf_counter()
        assert store.get_run(run_id).name == "read while written"  # the last committed state, at once
        assert len(store.metrics(run_id)) == 1 and len(store.list_runs()) == 1
        assert time.perf_counter() - t < 2.0
    finally:
        release.set()
        thread.join()
    assert store.get_run(run_id).name == "renamed" and len(store.metrics(run_id)) == 2


def test_recovery_judges_only_runs_owned_on_this_host(store):
    elsewhere = store.create_run({"model": "x"}, "a live run on machine A", status="running")
    here = store.create_run({"model": "x"}, "a dead run of this host", status="running")
    legacy = store.create_run({"model": "x"}, "recorded before hosts were", status="running")
    with store._write() as conn:
        conn.execute("UPDATE runs SET owner_pid = 1, owner_start = 'gone', owner_host = 'machine-a' WHERE id = ?",
                     (elsewhere,))
        conn.execute("UPDATE runs SET owner_start = 'gone' WHERE id = ?", (here,))
        conn.execute("UPDATE runs SET owner_start = 'gone', owner_host = NULL WHERE id = ?", (legacy,))
    reopened = RunStore(store.runs_dir)
    assert reopened.get_run(elsewhere).status == "running"  # machine B cannot judge machine A's pids
    assert reopened.get_run(here).status == reopened.get_run(legacy).status == "interrupted"
    assert reopened.claim(elsewhere, ["running"], status="queued")  # (a claim makes this host its owner)
    assert reopened._conn().execute("SELECT owner_host FROM runs WHERE id = ?", (elsewhere,)).fetchone()[0] != "machine-a"


def test_ensure_schema_takes_sqlite_sql_on_both(store):
    schema = """
    CREATE TABLE IF NOT EXISTS sweeps (id TEXT PRIMARY KEY, created REAL NOT NULL, trials INTEGER, spec TEXT);
    CREATE TABLE IF NOT EXISTS sweep_trials (sweep_id TEXT NOT NULL, n INTEGER NOT NULL, run_id TEXT, score REAL,
        note TEXT DEFAULT 'a; b', PRIMARY KEY (sweep_id, n));
    CREATE INDEX IF NOT EXISTS sweep_trials_run ON sweep_trials (run_id);
    """
    store.ensure_schema(schema)
    store.ensure_schema(schema)  # idempotent
    t = time.time()
    with store._write() as conn:
        conn.execute("INSERT INTO sweeps (id, created, trials, spec) VALUES (?, ?, ?, ?)", ("s1", t, 2**33, "{}"))
        conn.executemany("INSERT INTO sweep_trials (sweep_id, n, run_id, score) VALUES (?, ?, ?, ?)",
                         [("s1", n, None, n / 3) for n in range(3)])
    with pytest.raises(store.integrity_errors), store._write() as conn:
        conn.execute("INSERT INTO sweeps (id, created) VALUES (?, ?)", ("s1", t))
    assert store._conn().execute("SELECT created, trials FROM sweeps WHERE id LIKE ?", ("s%",)).fetchone() == (t, 2**33)
    assert store._conn().execute("SELECT SUM(n), MAX(score), MIN(note) FROM sweep_trials").fetchone() == (3, 2 / 3, "a; b")
    assert [row[1] for row in store._conn().execute("PRAGMA table_info(sweeps)")] == ["id", "created", "trials", "spec"]


def test_describe_names_the_backend_without_secrets(store, backend):
    if backend is None:
        assert store.url is None and store.describe() == f"SQLite {store.runs_dir / 'workbench.db'}"
    else:
        assert store.url == backend and store.describe().startswith("PostgreSQL 127.0.0.1:")
        assert "postgres@" not in store.describe() and store.path is None


# -- PostgreSQL only ----------------------------------------------------------------------------------------
def test_an_unreachable_server_is_one_line_without_the_password(runs_dir, monkeypatch):
    from workbench.runs.pg_local import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(WorkbenchError) as caught:
        RunStore(runs_dir, url=f"postgresql://ann:s3cret@127.0.0.1:{port}/workbench")
    message = str(caught.value)
    assert "\n" not in message and "s3cret" not in message and "ann@" not in message
    assert message.startswith("Cannot reach the PostgreSQL run store") and "WORKBENCH_STORE_URL" in message
    assert message.endswith(f"Received: store_url=postgresql://127.0.0.1:{port}/workbench")
    monkeypatch.setenv("WORKBENCH_STORE_URL", "mysql://root@db/x")
    with pytest.raises(WorkbenchError, match="must be a PostgreSQL URL"):
        RunStore(runs_dir)


def test_a_dropped_connection_is_replaced(runs_dir, pg_url):
    import psycopg

    store = RunStore(runs_dir, url=pg_url)
    run_id = store.create_run({"model": "x"}, "survives a restart", status="running")

    def drop() -> None:
        pid = store._conn().raw.info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    drop()
    assert store.get_run(run_id).name == "survives a restart"  # a read runs again on a new connection
    drop()
    store.update_run(run_id, status="completed")  # so does a write transaction that had not begun
    assert store.get_run(run_id).status == "completed"


def test_the_server_disk_full_is_a_store_write_error_about_the_server(tmp_path):
    from psycopg import errors

    from workbench.runs.storage import StoreWriteError, store_error, write_problem

    assert write_problem(errors.DiskFull("could not extend file")) == "full"
    assert write_problem(errors.ReadOnlySqlTransaction("read-only")) == "readonly"
    assert write_problem(errors.UniqueViolation("duplicate key")) is None
    error = store_error(errors.DiskFull("could not extend file"), tmp_path, server="PostgreSQL db:5432/wb")
    assert isinstance(error, StoreWriteError) and error.kind == "full"
    assert "server" in str(error) and "PostgreSQL db:5432/wb" in str(error) and str(tmp_path) not in str(error)


def test_without_postgresql_installed_the_fixture_says_how_to_install_it(monkeypatch):
    import glob
    import shutil

    from postgres import PostgresNotInstalled, find_bin_dir

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    with pytest.raises(PostgresNotInstalled) as caught:
        find_bin_dir()
    assert "\n" not in str(caught.value) and str(caught.value).endswith("apt-get install postgresql")


def test_the_postgresql_dialect_translates_sqlite_sql():
    from workbench.runs.store_sql import split_statements, translate

    assert translate("SELECT id FROM runs WHERE id LIKE ? AND key LIKE 'trainable/%' AND x = '?'") == \
        "SELECT id FROM runs WHERE id LIKE %s AND key LIKE 'trainable/%%' AND x = '?'"
    assert translate("CREATE TABLE IF NOT EXISTS metrics (run_id TEXT, step INTEGER, wall REAL)") == \
        "CREATE TABLE IF NOT EXISTS metrics (run_id TEXT, step BIGINT, wall DOUBLE PRECISION, rowid BIGSERIAL)"
    assert translate("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, b BLOB)") == \
        "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, b BYTEA)"
    assert translate("ALTER TABLE runs ADD COLUMN owner_host TEXT") == \
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS owner_host TEXT"
    assert "information_schema.columns" in translate("PRAGMA table_info(runs)")
    assert translate("SELECT real_value, integer_count FROM t") == "SELECT real_value, integer_count FROM t"
    assert split_statements("CREATE TABLE a (x TEXT DEFAULT ';');\n CREATE INDEX i ON a (x);\n") == \
        ["CREATE TABLE a (x TEXT DEFAULT ';')", "CREATE INDEX i ON a (x)"]


def test_the_cli_reads_a_postgresql_store_with_no_file_in_the_runs_directory(runs_dir, pg_url, monkeypatch, capsys):
    """With WORKBENCH_STORE_URL there is no workbench.db: `runs list` / `sweeps list` must still read the server."""
    import json

    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_STORE_URL", pg_url)
    run_id = RunStore(runs_dir).create_run({"model": "x"}, "stored in PostgreSQL")
    assert not (runs_dir / "workbench.db").exists()
    capsys.readouterr()
    assert main(["--runs-dir", str(runs_dir), "runs", "list", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])] == [run_id]
    assert main(["--runs-dir", str(runs_dir), "sweeps", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == []
