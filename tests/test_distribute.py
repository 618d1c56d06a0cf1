"""Scale-out: MirroredStrategy over two logical CPU devices trains and reports two replicas."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workbench.config import TrainConfig
from workbench.errors import ConfigError

SCRIPT = """
import json, sys
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
from workbench.config import TrainConfig
from workbench.runs import RunManager
manager = RunManager(sys.argv[1])
out = {}
for method in ("lora", "full"):
    run_id = manager.start(TrainConfig(model="mnist-cnn", data="digits", method=method, epochs=2, batch_size=16,
                                       limit_per_class=20, strategy="mirrored", export_model=False,
                                       discriminative=2.0 if method == "full" else None))
    record = manager.store.get_run(run_id) if manager.wait(run_id) else None
    out[method] = {"status": record.status, "error": record.error, **record.final_metrics}
print(json.dumps(out))
"""


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for method, summary in results.items():
        assert summary["status"] == "completed", (method, summary["error"])
        assert summary["replicas"] == 2 and summary["test_accuracy"] > 0.5


def test_multiworker_without_tf_config_is_explained(monkeypatch):
    from workbench.train.distribute import strategy_scope

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        strategy_scope(TrainConfig(strategy="multiworker").strategy)
