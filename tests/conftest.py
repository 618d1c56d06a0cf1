"""Shared fixtures: a private runs directory per test and small, fast configurations."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# AppTest pages run inside the test process: their runs train in threads here. The browser tests
# start the real app, with engine worker processes (tests/browser.py sets it back to "process").
os.environ["WORKBENCH_EXECUTOR"] = "thread"

import pytest  # noqa: E402


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(path))
    return path


@pytest.fixture
def store(runs_dir):
    from workbench.runs import RunStore

    return RunStore(runs_dir)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (127.0.0.1, a free port, `tests/postgres.py`)."""
    from postgres import PostgresNotInstalled, PostgresServer

    server = PostgresServer()
    try:
        server.start()
    except PostgresNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)  # never a silent skip: the PostgreSQL store would go untested
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server):
    """A fresh, empty database per test (tests never see each other's runs)."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch):
    """Run the test on both stores: None (SQLite), or the PostgreSQL URL, set as WORKBENCH_STORE_URL so that
    every store the test (or a process it starts) opens uses it."""
    if request.param == "sqlite":
        monkeypatch.delenv("WORKBENCH_STORE_URL", raising=False)
        return None
    url = request.getfixturevalue("pg_url")
    monkeypatch.setenv("WORKBENCH_STORE_URL", url)
    return url


def small_image_config(**overrides):
    """Seconds on a CPU: the MNIST-pretrained CNN on scikit-learn digits with few labels."""
    from workbench.config import TrainConfig

    values = dict(model="mnist-cnn", data="digits", method="lora", epochs=1, batch_size=16,
                  limit_per_class=10, export_model=True)
    values.update(overrides)
    return TrainConfig.from_dict(values)
