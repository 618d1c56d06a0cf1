"""Row 9: work the engine no longer does — the frozen-prefix cache and length-bucketed batches.

9a/9b/9c are step times of long-lived MiniLM-L6 workers rotated block by block (as row 2, see
`minilm.rotate`), all on the same sms-spam token ids:

- a top-down stage that trains block_6 and the head (full fine-tuning's first unfreezing): the engine
  before this row (whole model every step, full-length-trimmed batches) vs now (cached prefix, buckets);
- LoRA on all blocks vs LoRA on the top 2 of 6 blocks, both with today's defaults;
- the workbench's LoRA vs the peer's (HF transformers + peft), both grouping batches by length.

9d trains real runs through `trainer.train()` (2 seeds, 3 epochs) for the accuracy each choice costs:
LoRA on all blocks, on the top 2 (cached), and on the top 2 with the cache off (dropout on in the
frozen blocks: what the cache's inference mode changes).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from benchmarks.common import median
from benchmarks.minilm import DATA, _peer, _workbench, minilm_dir, rotate
from benchmarks.workers import Worker

STAGE = ("--method", "full", "--groups", "block_6,head")
TODAY = ("--prefix-cache", "0", "--buckets", "0")  # the engine before this row
NOW = ("--prefix-cache", "1", "--buckets", "1")  # today's defaults


def speed(*, peer: bool, rounds: int = 6, k: int = 3, deadline: float | None = None, log=print) -> dict[str, Any]:
    workers: dict[str, Worker] = {}
    t0 = time.perf_counter()
    try:
        workers["stage_before"] = _workbench("stage_before", *STAGE, *TODAY, wait=True)
        workers["stage_before"].ask(cmd="dump", path=str(DATA))
        workers["stage_cached"] = _workbench("stage_cached", *STAGE, *NOW)
        workers["lora_all"] = _workbench("lora_all", "--method", "lora", *NOW)
        workers["lora_top2"] = _workbench("lora_top2", "--method", "lora", "--top-blocks", "2", *NOW)
        if peer:
            model_dir = minilm_dir()
            workers["peer_grouped"] = _peer("peer_grouped", "lora", model_dir, extra=["--group-by-length"])
            workers["peer_grouped_passive"] = _peer("peer_grouped_passive", "lora", model_dir,
                                                    {"OMP_WAIT_POLICY": "PASSIVE"}, extra=["--group-by-length"])
        times, per_round, cpu, memory, info, done = rotate(workers, rounds=rounds, k=k, warmup=3, deadline=deadline,
                                                           log=log)
    finally:
        for worker in workers.values():
            worker.close()

    def faster(a: str, b: str) -> float:
        """median over rounds of (b's step time / a's): how many times faster a is."""
        return median([y / x for x, y in zip(per_round[a], per_round[b], strict=True)])

    out: dict[str, Any] = {
        "step_ms": {n: 1000 * median(v) for n, v in times.items()},
        "cpu_ms_per_step": {n: 1000 * median(v) for n, v in cpu.items()}, "peak_rss_mb": memory, "info": info,
        "rounds": done, "k": k, "stage_speedup": faster("stage_cached", "stage_before"),
        "top2_speedup": faster("lora_top2", "lora_all"), "seconds": time.perf_counter() - t0,
    }
    if peer:
        best_peer = [min(a, b) for a, b in zip(per_round["peer_grouped"], per_round["peer_grouped_passive"],
                                                strict=True)]
        out["vs_peer_grouped"] = median([p / w for p, w in zip(best_peer, per_round["lora_all"], strict=True)])
    return out


def accuracy(seeds: tuple[int, ...] = (0, 1), epochs: int = 3, max_rows: int = 800) -> dict[str, Any]:
    """Test accuracy and wall time of real runs (`trainer.train`), per configuration, over `seeds`."""
    import keras

    from workbench.config import TrainConfig
    from workbench.runs import RunStore
    from workbench.train.trainer import prepare, train

    configs = {"lora_all": ({}, True), "lora_top2": ({"top_blocks": 2}, True),
               "lora_top2_no_cache": ({"top_blocks": 2}, False)}
    store = RunStore(tempfile.mkdtemp(prefix="wb-bench-prefix-"))
    out: dict[str, Any] = {}
    for name, (options, cached) in configs.items():
        runs = []
        for seed in seeds:
            cfg = TrainConfig(model="minilm-l6", data="sms-spam", method="lora", method_options=options,
                              prefix_cache=cached, epochs=epochs, max_rows=max_rows, seed=seed, export_model=False)
            keras.utils.set_random_seed(seed)
            prep = prepare(cfg)
            run_id = store.create_run(cfg.to_dict(), name, status="running")
            t = time.perf_counter()
            summary = train(prep, store=store, run_id=run_id)
            runs.append({"seed": seed, "test_accuracy": summary.get("test_accuracy"), "run_s": time.perf_counter() - t,
                         "fit_s": summary["fit_s"], "steps_per_s": summary["steps_per_s"],
                         "prefix_cache": summary.get("prefix_cache"), "trainable": summary["trainable_params"]})
        out[name] = {"runs": runs, "test_accuracy": sum(r["test_accuracy"] for r in runs) / len(runs),
                     "fit_s": median([r["fit_s"] for r in runs])}
    out["load"] = os.getloadavg()[0]
    return out
