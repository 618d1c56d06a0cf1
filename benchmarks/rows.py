"""The measurements behind each row of `benchmarks/results.md` (run one per process).

    python -m benchmarks.rows engine|probe|start|start-cold|charts|store

Each prints one tagged JSON line (see `benchmarks.common.reply`). The MiniLM-vs-peer row drives
worker processes instead and lives in `benchmarks/minilm.py`.
"""

from __future__ import annotations

import os
import sys
import time

T_PROCESS = time.perf_counter()  # the cold start row counts from here

import json  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import median, reply  # noqa: E402


# -- 1. engine overhead -------------------------------------------------------------------------
def engine(repeats: int = 5, epochs: int = 6) -> dict:
    """The engine's `train` (run store + per-step loss + TensorBoard) vs bare `Model.fit`, alternated.

    Same model (mnist-cnn, all weights train), data (digits), batch 32, epochs, validation each epoch.
    Throughput = training steps per second within epochs 2..N (the first traces the step).
    Also the time spent inside the Recorder (store + TensorBoard) per step, measured in the run.
    """
    import keras
    import numpy as np

    from workbench.config import TrainConfig
    from workbench.runs import RunStore
    from workbench.train import callbacks as cb
    from workbench.train.trainer import labels, prepare, train

    inside = {"s": 0.0}

    def timed(fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inside["s"] += time.perf_counter() - t
        return wrapper

    for name in ("on_train_batch_begin", "on_train_batch_end", "on_epoch_begin", "on_epoch_end", "on_train_end",
                 "on_train_begin"):
        setattr(cb.Recorder, name, timed(getattr(cb.Recorder, name)))

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.spans: list[float] = []
            self.steps: list[int] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t, self.n = time.perf_counter(), 0

        def on_train_batch_end(self, batch, logs=None):
            self.n += 1
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.spans.append(self.last - self.t)  # training batches only (validation excluded)
            self.steps.append(self.n)

    cfg = TrainConfig(model="mnist-cnn", data="digits", method="full", epochs=epochs, batch_size=32, lr=1e-3,
                      export_model=False)
    store = RunStore(tempfile.mkdtemp(prefix="wb-bench-engine-"))
    engine_sps, bare_sps, recorder_ms = [], [], []
    for _ in range(repeats):
        # A: the workbench engine, exactly as the run manager calls it.
        keras.utils.set_random_seed(cfg.seed)
        prep = prepare(cfg)
        clock = EpochClock()
        run_id = store.create_run(cfg.to_dict(), "bench", status="running")
        inside["s"] = 0.0
        summary = train(prep, store=store, run_id=run_id, extra_callbacks=[clock])
        engine_sps.append(sum(clock.steps[1:]) / sum(clock.spans[1:]))
        recorder_ms.append(1000 * inside["s"] / summary["steps"])
        # B: bare Keras on the same model, data and batch.
        keras.utils.set_random_seed(cfg.seed)
        prep = prepare(cfg)
        model = prep.task_model.model
        model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=cfg.weight_decay),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        clock = EpochClock()
        model.fit(prep.inputs["train"], labels(prep, "train"), batch_size=cfg.batch_size, epochs=epochs, shuffle=True,
                  validation_data=(prep.inputs["val"], labels(prep, "val")), callbacks=[clock], verbose=0)
        bare_sps.append(sum(clock.steps[1:]) / sum(clock.spans[1:]))
    ratios = [e / b for e, b in zip(engine_sps, bare_sps, strict=True)]
    rows = len(store.metrics(run_id))
    micro = {name: _recorder_micro(writer, steps_per_flush=max(1, round(0.5 * median(engine_sps))))
             for name, writer in _writers().items()}
    return {"engine_steps_per_s": median(engine_sps), "bare_steps_per_s": median(bare_sps),
            "ratio": median(ratios), "ratios": ratios, "recorder_ms_per_step": median(recorder_ms),
            "recorder_ms_all": recorder_ms, "metric_rows_per_run": rows, "steps_per_epoch": clock.steps[-1],
            "step_ms": 1000 / median(engine_sps), "load": os.getloadavg()[0], "np": np.__version__,
            "recorder_micro_ms": micro}


def _writers() -> dict:
    from workbench.train.tensorboard import TensorBoardWriter

    return {"without TensorBoard": None, "with TensorBoard": TensorBoardWriter}


def _recorder_micro(writer_cls, *, steps_per_flush: int, steps: int = 3000) -> float:
    """The Recorder alone: ms per step for `steps` fake steps, flushing as often as the real run did."""
    from workbench.runs import RunStore
    from workbench.train.callbacks import LiveState, Recorder

    store = RunStore(tempfile.mkdtemp(prefix="wb-bench-rec-"))
    run_id = store.create_run({}, "recorder", status="running")
    writer = writer_cls.maybe(store.run_dir(run_id) / "tensorboard") if writer_cls else None
    recorder = Recorder(store, run_id, LiveState(), n_train=1280, batch_size=32, lr_reader=lambda: {"train/lr": 1e-3},
                        tensorboard=writer, flush_interval=1e9)  # flushes below, at the real run's rate
    recorder.on_train_begin()
    t = time.perf_counter()
    for i in range(steps):
        recorder.on_train_batch_begin(i % 40)
        recorder.on_train_batch_end(i % 40, {"batch_loss": 0.5})
        if (i + 1) % steps_per_flush == 0:
            recorder.flush()
    recorder.on_train_end()
    out = 1000 * (time.perf_counter() - t) / steps
    if writer is not None:
        writer.close()
    return out


# -- 3. linear probe: cached features vs recomputing the frozen backbone ---------------------------
def probe(epochs: int = 3, max_rows: int = 480) -> dict:
    """MiniLM-L6 linear probe on sms-spam, through `train`: per-epoch time after the first."""
    import keras

    from workbench.config import TrainConfig
    from workbench.runs import RunStore
    from workbench.train import features
    from workbench.train.trainer import prepare, train

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.spans: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()
            self.fitted = self.model.name

        def on_epoch_end(self, epoch, logs=None):
            self.spans.append(time.perf_counter() - self.t)  # training + validation of one epoch

    cfg = TrainConfig(model="minilm-l6", data="sms-spam", method="linear", epochs=epochs, batch_size=32,
                      max_rows=max_rows, max_seq_len=64, export_model=False)
    store = RunStore(tempfile.mkdtemp(prefix="wb-bench-probe-"))
    out = {}
    for label, flag in (("recompute", "0"), ("cached", "1")):
        os.environ["WORKBENCH_FEATURE_CACHE"] = flag
        os.environ["WORKBENCH_PREFIX_CACHE"] = flag  # (else the frozen-prefix cache would serve the probe: row 9)
        keras.utils.set_random_seed(cfg.seed)
        prep = prepare(cfg)
        plan = features.plan(prep)
        clock = EpochClock()
        run_id = store.create_run(cfg.to_dict(), label, status="running")
        t = time.perf_counter()
        summary = train(prep, store=store, run_id=run_id, extra_callbacks=[clock])
        out[label] = {"epoch_s": clock.spans, "later_epoch_s": median(clock.spans[1:]), "run_s": time.perf_counter() - t,
                      "cached": plan is not None, "fitted_model": clock.fitted, "val_accuracy": summary.get("val_accuracy"),
                      "test_accuracy": summary.get("test_accuracy"), "steps": summary["steps"]}
    os.environ.pop("WORKBENCH_FEATURE_CACHE", None)
    os.environ.pop("WORKBENCH_PREFIX_CACHE", None)
    out["speedup"] = out["recompute"]["later_epoch_s"] / out["cached"]["later_epoch_s"]
    out["run_speedup"] = out["recompute"]["run_s"] / out["cached"]["run_s"]
    out["load"] = os.getloadavg()[0]
    return out


# -- 4. start → first point -------------------------------------------------------------------------
def _first_point(manager, config) -> dict:
    """From `RunManager.start` to the first `train/loss` row readable in the store, with a breakdown."""
    store = manager.store
    t0, wall0 = time.perf_counter(), time.time()
    run_id = manager.start(config)
    t_start = time.perf_counter()
    probe = "SELECT 1 FROM metrics WHERE run_id = ? AND key = 'train/loss' LIMIT 1"
    polls = 0
    while store._conn().execute(probe, (run_id,)).fetchone() is None:  # a cheap poll every 20 ms (the app
        polls += 1                                                       # refreshes far less often)
        if polls % 50 == 0 and manager.status(run_id) not in ("queued", "running"):
            raise RuntimeError(f"run ended before its first point: {store.get_run(run_id).error}")
        time.sleep(0.02)
    t_point = time.perf_counter()
    record = store.get_run(run_id)
    manager.wait(run_id, timeout=600)
    frame = store.metrics(run_id, keys=["train/loss"])
    total = t_point - t0
    first_step = float(frame.wall.iloc[0])  # from on_train_begin to the first loss row (trace + 1 step)
    launched = (record.started - wall0) if record.started else 0.0  # start(): preflight, queue, thread
    return {"start_to_point_s": total, "t_point": t_point, "breakdown_s": {
        "start_call_preflight": round(t_start - t0, 3),
        "thread_launch": round(max(0.0, launched - (t_start - t0)), 3),
        "prepare_compile": round(total - launched - first_step, 3), "first_step_with_trace": round(first_step, 3)}}


def start_warm() -> dict:
    """A built-in model (the default tiny-bert LoRA config) with its model file and data already cached."""
    from workbench.config import TrainConfig
    from workbench.runs import RunManager

    manager = RunManager(tempfile.mkdtemp(prefix="wb-bench-start-"))
    config = TrainConfig(epochs=1, export_model=False)
    first = _first_point(manager, config)  # cold inside this process: warms every cache
    warm = [_first_point(manager, config) for _ in range(3)]
    best = sorted(warm, key=lambda r: r["start_to_point_s"])[len(warm) // 2]
    return {"warm_s": median([r["start_to_point_s"] for r in warm]), "warm_all": [r["start_to_point_s"] for r in warm],
            "warm_breakdown_s": best["breakdown_s"], "first_in_process_s": first["start_to_point_s"], "model": config.model,
            "data": config.data, "method": config.method, "load": os.getloadavg()[0]}


def start_cold() -> dict:
    """A fresh process: imports, model file, tokenizer, data and the first traced step."""
    t_import = time.perf_counter()
    from workbench.config import TrainConfig
    from workbench.runs import RunManager

    manager = RunManager(tempfile.mkdtemp(prefix="wb-bench-cold-"))
    imported = time.perf_counter()
    point = _first_point(manager, TrainConfig(epochs=1, export_model=False))
    return {"cold_from_start_s": point["start_to_point_s"], "import_s": imported - t_import,
            "cold_from_process_s": point["t_point"] - T_PROCESS, "breakdown_s": point["breakdown_s"],
            "load": os.getloadavg()[0]}


# -- 5. charts --------------------------------------------------------------------------------------------
def charts(n_runs: int = 20, steps: int = 5000, repeats: int = 5) -> dict:
    import numpy as np
    import pandas as pd

    from workbench.charts import compare_figure, loss_figure

    rng = np.random.default_rng(0)
    per_epoch = steps // 5
    frames, runs = [], []
    for i in range(n_runs):
        run_id = f"20260101-000000-{i:06x}"
        step = np.arange(1, steps + 1)
        loss = 2.0 * np.exp(-step / (800 + 40 * i)) + 0.1 + 0.05 * rng.standard_normal(steps)
        frames.append(pd.DataFrame({"run_id": run_id, "step": step, "epoch": (step - 1) // per_epoch, "key": "train/loss",
                                    "value": loss, "wall": step * 0.05}))
        ends = np.arange(per_epoch, steps + 1, per_epoch)
        frames.append(pd.DataFrame({"run_id": run_id, "step": ends, "epoch": (ends - 1) // per_epoch, "key": "val/loss",
                                    "value": loss[ends - 1] + 0.05, "wall": ends * 0.05}))
        config = {"model": "tiny-bert", "data": "sms-spam", "method": "lora", "lr": 1e-3 * (1 + i % 10), "seed": i // 10,
                  "batch_size": 32, "rank": 8}
        runs.append({"id": run_id, "name": f"lora lr{config['lr']:.0e} s{config['seed']}", "status": "completed",
                     "model": "tiny-bert", "dataset": "sms-spam", "method": "lora", "seed": config["seed"],
                     "batch_size": 32, "config": config})
    metrics = pd.concat(frames, ignore_index=True)
    runs_frame = pd.DataFrame(runs)
    one = metrics[metrics.run_id == runs[0]["id"]]

    def clock(fn) -> list[float]:
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    compare_seeds = clock(lambda: compare_figure(metrics, runs_frame))  # 10 experiments × 2 seeds: bands
    compare_lines = clock(lambda: compare_figure(metrics, runs_frame, band_by_seed=False))  # 20 lines
    compare_epoch = clock(lambda: compare_figure(metrics, runs_frame, x="epoch"))
    live = clock(lambda: loss_figure(one))
    fig = compare_figure(metrics, runs_frame)
    to_json = clock(lambda: fig.to_json())
    return {"compare_s": max(median(compare_seeds), median(compare_lines)), "compare_bands_s": median(compare_seeds),
            "compare_lines_s": median(compare_lines), "compare_epoch_axis_s": median(compare_epoch),
            "loss_figure_ms": 1000 * median(live), "compare_to_json_s": median(to_json), "rows": len(metrics),
            "points_drawn": int(sum(len(t.x) for t in fig.data)), "load": os.getloadavg()[0]}


# -- 6. run store under concurrency ----------------------------------------------------------------------
def _writer(runs_dir: str, run_id: str, seconds: float, steps_per_flush: int, queue, go) -> None:
    from workbench.runs import RunStore

    store = RunStore(runs_dir)
    queue.put("ready")
    go.wait()
    steps, errors, flushes = 0, [], 0
    rows: list[tuple] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        steps += 1
        now = time.perf_counter() - t0
        rows += [(run_id, steps, 0, "train/loss", 1.0 / steps, now), (run_id, steps, 0, "train/examples_per_s", 500.0, now),
                 (run_id, steps, 0, "train/lr", 1e-3, now)]
        if steps % steps_per_flush == 0:
            try:
                store.append_metrics(rows)
                flushes += 1
            except Exception as exc:  # noqa: BLE001 - counted, the row's verdict
                errors.append(repr(exc))
            rows = []
            time.sleep(0.002)  # the training step between flushes
    queue.put({"run_id": run_id, "steps": steps, "errors": errors, "flushes": flushes, "seconds": time.perf_counter() - t0})


def store_concurrency(writers: int = 3, readers: int = 10, seconds: float = 10.0) -> dict:
    import multiprocessing as mp

    from workbench.runs import RunStore

    runs_dir = tempfile.mkdtemp(prefix="wb-bench-store-")
    store = RunStore(runs_dir)
    ids = [store.create_run({"model": "mlp"}, f"writer {i}", status="running") for i in range(writers)]
    ctx = mp.get_context("spawn")
    queue, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_writer, args=(runs_dir, run_id, seconds, 10, queue, go)) for run_id in ids]
    for p in procs:
        p.start()
    for _ in procs:
        assert queue.get(timeout=300) == "ready"
    stop = threading.Event()
    reads = {"queries": 0, "rows": 0, "errors": [], "latency": []}
    lock = threading.Lock()

    def reader(k: int) -> None:
        mine = RunStore(runs_dir)
        seen = dict.fromkeys(ids, 0)
        while not stop.is_set():
            run_id = ids[k % len(ids)]
            try:
                t = time.perf_counter()
                frame = mine.metrics(run_id, keys=["train/loss"], since_step=seen[run_id])
                mine.list_runs()
                dt = time.perf_counter() - t
                if len(frame):
                    seen[run_id] = int(frame.step.max())
                with lock:
                    reads["queries"] += 1
                    reads["rows"] += len(frame)
                    reads["latency"].append(dt)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    reads["errors"].append(repr(exc))
            time.sleep(0.05)  # a live chart polls a few times a second

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(readers)]
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    write_errors = [e for r in results for e in r["errors"]]
    total_steps = sum(r["steps"] for r in results)
    lat = sorted(reads["latency"])
    return {"writers": writers, "readers": readers, "seconds": elapsed,
            "steps_written_per_s": total_steps / max(r["seconds"] for r in results),
            "steps_read_per_s": reads["rows"] / elapsed, "queries_per_s": reads["queries"] / elapsed,
            "read_p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))] if lat else None,
            "lock_errors": len(write_errors) + len(reads["errors"]),
            "errors": (write_errors + reads["errors"])[:5], "load": os.getloadavg()[0]}


def prefix_accuracy() -> dict:
    from benchmarks.prefix import accuracy

    return accuracy()


ROWS = {"engine": engine, "probe": probe, "start": start_warm, "start-cold": start_cold, "charts": charts,
        "store": store_concurrency, "prefix-accuracy": prefix_accuracy}


if __name__ == "__main__":
    name = sys.argv[1]
    result = ROWS[name]()
    reply(row=name, **json.loads(json.dumps(result, default=float)))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (TensorFlow's can take seconds)
