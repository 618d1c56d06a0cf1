"""Row 8: what explaining a run costs (change map, gradient norms, retention probe, predictions).

    python -m benchmarks.explain

The study's runs (the forgetting scenario on mnist-cnn/digits, one seed per variant, and the text
suite's LoRA row on tiny-bert/sms-spam), each trained three times with the explain parts and three
times with `WORKBENCH_EXPLAIN=0`, alternating (medians). Two numbers per run:

- inside: the seconds spent in the change map and the retention probe (the run's `explain_s_changes`
  + `explain_s_retention`, timed around each call) ÷ the run's wall time: the cost itself, free of
  the machine's noise; storing the test predictions (one more pass over the test split) is
  reported beside it;
- paired: wall with ÷ wall without (noisy on a shared 2-core machine; reported beside it).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import median, reply  # noqa: E402

PAIRS = 3  # alternating with/without pairs per run (medians): one pair is at the mercy of the shared machine


def study_configs() -> list:
    from workbench.config import TrainConfig
    from workbench.presets import forgetting_variants
    from workbench.study import TEXT

    base = TrainConfig(model="mnist-cnn", data="digits", method="full", epochs=5, batch_size=16, export_model=False)
    configs = [TrainConfig.from_dict({**base.to_dict(), **changes, "name": f"bench {label}"})
               for label, changes in forgetting_variants(base)]
    configs.append(TrainConfig.from_dict({**TEXT, "method": "lora", "name": "bench text lora"}))
    return configs


def one_run(config, explain: bool) -> dict:
    from workbench.runs import RunManager

    os.environ["WORKBENCH_EXPLAIN"] = "1" if explain else "0"
    with tempfile.TemporaryDirectory() as runs:
        manager = RunManager(runs, executor="thread")
        run_id = manager.start(config)
        status = manager.wait(run_id)
        record = manager.store.get_run(run_id)
        manager.close()
    if status != "completed":
        raise RuntimeError(f"{config.name}: {status}: {record.error}")
    final = record.final_metrics
    return {"wall_s": record.wall_s, "explain_s": final.get("explain_s_changes", 0.0) + final.get("explain_s_retention", 0.0),
            "predictions_s": final.get("explain_s_predictions", 0.0)}


def preset_seconds() -> dict:
    """The class preset "Forgetting: full vs LoRA vs staged" as the app runs it: 15 runs queued at once on an
    engine worker process (`executor="process"`, one at a time); seconds from Start to the last run's end."""
    import time

    from workbench.config import TrainConfig
    from workbench.presets import FORGETTING, presets
    from workbench.runs import RunManager

    os.environ["WORKBENCH_EXPLAIN"] = "1"
    configs = presets()[FORGETTING](TrainConfig(model="mnist-cnn", data="digits"))
    with tempfile.TemporaryDirectory() as runs:
        manager = RunManager(runs, executor="process")
        t0 = time.perf_counter()
        ids = [manager.start(c) for c in configs]
        statuses = [manager.wait(i) for i in ids]
        seconds = time.perf_counter() - t0
        manager.close()
    return {"runs": len(ids), "seconds": seconds, "completed": statuses.count("completed")}


def measure() -> dict:
    rows = []
    for config in study_configs():
        one_run(config, True)  # warm: the first build of a model pays for imports and caches
        pairs = [(one_run(config, True), one_run(config, False)) for _ in range(PAIRS)]  # alternating
        with_ = {k: median([w[k] for w, _ in pairs]) for k in ("wall_s", "explain_s", "predictions_s")}
        without = median([o["wall_s"] for _, o in pairs])
        rows.append({"run": config.name.removeprefix("bench "), "wall_s": with_["wall_s"], "wall_without_s": without,
                     "explain_s": with_["explain_s"], "predictions_s": with_["predictions_s"],
                     "inside": with_["explain_s"] / with_["wall_s"], "paired": with_["wall_s"] / without})
    total_inside = sum(r["explain_s"] for r in rows) / sum(r["wall_s"] for r in rows)
    predictions = sum(r["predictions_s"] for r in rows) / sum(r["wall_s"] for r in rows)
    return {"runs": rows, "inside": total_inside, "predictions": predictions, "worst_inside": max(r["inside"] for r in rows),
            "paired_median": median([r["paired"] for r in rows])}


if __name__ == "__main__":
    reply(row="explain", **measure(), preset=preset_seconds())
    sys.stdout.flush()
    os._exit(0)
