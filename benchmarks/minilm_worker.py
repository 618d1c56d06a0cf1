"""One MiniLM-L6 training process of the workbench engine, driven step-block by step-block.

Started by `benchmarks/run.py` (row "LoRA vs full"); it prepares the real model with the engine
(`trainer.prepare`, `compile_model`, `training_feed`, the engine's callbacks with a live run store
and TensorBoard) and runs ONE `fit`. A callback pauses after every block of steps and waits for the
next request on stdin, so the peer (PyTorch) can run its block while this process sleeps:
A B A B … on two cores without the two stacks competing.

Requests (JSON lines): {"cmd": "steps", "n": K} → {"times": [s per step, …]}; {"cmd": "mem"};
{"cmd": "dump", "path": P} writes the encoded training inputs for the peer; {"cmd": "quit"}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import commands, peak_rss_mb, reply  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="lora")
    parser.add_argument("--jit", default="auto", choices=["auto", "0", "1"])
    parser.add_argument("--policy", default="off", choices=["off", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--trim", default="auto", choices=["auto", "0", "1"], help="trim token batches to their longest row")
    parser.add_argument("--buckets", default="0", choices=["0", "1"], help="length-bucketed batches (with trimming)")
    parser.add_argument("--prefix-cache", default="0", choices=["0", "1"], help="cache the frozen lowest groups")
    parser.add_argument("--top-blocks", type=int, default=None, help="LoRA on the top N blocks only")
    parser.add_argument("--groups", default=None,
                        help="train only these groups, e.g. block_6,head (a stage of hierarchical fine-tuning)")
    parser.add_argument("--lora-merged", action="store_true",
                        help="LoRA layers apply the merged kernel W + s·AB (the form used before the factored call)")
    args = parser.parse_args()

    import keras
    import numpy as np

    from workbench.config import TrainConfig
    from workbench.runs import RunStore
    from workbench.train import device, prefix_cache
    from workbench.train.callbacks import LiveState, Recorder
    from workbench.train.feed import training_feed
    from workbench.train.lr_control import LearningRateControl, make_optimizer
    from workbench.train.tensorboard import TensorBoardWriter
    from workbench.train.trainer import (
        compile_model,
        labels,
        prepare,
        trainable_groups,
        trims_padding,
    )

    if args.lora_merged:
        from workbench.peft import lora_layers

        lora_layers.factorable = lambda layer: False  # FlatLoraMixin.call falls back to x·(W + s·AB)
    jit = {"auto": "auto", "0": False, "1": True}[args.jit]
    options = {"top_blocks": args.top_blocks} if args.top_blocks else {}
    cfg = TrainConfig(model=args.model, data="sms-spam", method=args.method, method_options=options,
                      batch_size=args.batch, max_seq_len=args.seq, max_rows=args.rows, epochs=40, jit_compile=jit,
                      mixed_precision=args.policy, export_model=False)
    keras.utils.set_random_seed(cfg.seed)
    keras.config.set_dtype_policy("float32" if cfg.mixed_precision == "off" else cfg.mixed_precision)
    t0 = time.perf_counter()
    prep = prepare(cfg)
    y = labels(prep, "train")
    trim = trims_padding(prep) if args.trim == "auto" else args.trim == "1"
    groups = trainable_groups(prep.task_model)
    if args.groups:  # the stage's flags, as `StagedUnfreezing` sets them
        for group, variables in groups.items():
            for variable in variables:
                variable.trainable = group in args.groups.split(",")
    x = prep.inputs["train"]
    cache = prefix_cache.plan(prep) if args.prefix_cache == "1" else None
    if cache is not None:
        x = prefix_cache.with_index(x)
        cache.update()
    data, steps_per_epoch = training_feed(x, y, batch_size=cfg.batch_size, epochs=cfg.epochs, seed=cfg.seed,
                                          trim_padding=trim, length_buckets=args.buckets == "1")
    lr = cfg.resolved_lr("text")
    optimizer, group_optimizers = make_optimizer(cfg, lr, groups)
    lr_control = LearningRateControl(cfg, lr, steps_per_epoch * cfg.epochs, group_optimizers)
    compile_model(prep, optimizer)
    fit_model = prep.task_model.model
    if cache is not None:
        fit_model = cache.model
        compile_model(prep, optimizer, model=fit_model)
    store = RunStore(tempfile.mkdtemp(prefix="wb-bench-runs-"))
    run_id = store.create_run(cfg.to_dict(), "bench", status="running")
    tensorboard = TensorBoardWriter.maybe(store.run_dir(run_id) / "tensorboard")
    recorder = Recorder(store, run_id, LiveState(), n_train=len(y), batch_size=cfg.batch_size,
                        lr_reader=lr_control.current, tensorboard=tensorboard)
    reply(ready=True, prepare_s=round(time.perf_counter() - t0, 2), trainable=prep.report.trainable,
          total=prep.report.total, percent=prep.report.percent, jit=prep.task_model.model.jit_compile, trim=trim,
          cut=cache.cut if cache is not None else 0, cache_s=round(cache.seconds, 2) if cache is not None else 0,
          device=device.device_name(), threads=device.thread_settings())
    requests = commands()

    class Blocks(keras.callbacks.Callback):
        """Serve requests between step blocks; time every step (end-to-end, data + callbacks)."""

        def __init__(self) -> None:
            super().__init__()
            self.left = 0
            self.times: list[float] = []
            self.last = None

        def serve(self) -> None:
            for request in requests:
                cmd = request["cmd"]
                if cmd == "steps":
                    self.left, self.times, self.cpu0 = int(request["n"]), [], time.process_time()
                    return
                if cmd == "mem":
                    reply(peak_rss_mb=peak_rss_mb())
                elif cmd == "dump":
                    x = prep.inputs["train"]
                    np.savez(request["path"], token_ids=x["token_ids"], padding_mask=x["padding_mask"],
                             segment_ids=x["segment_ids"], labels=y.reshape(-1))
                    reply(dumped=request["path"])
            self.model.stop_training = True
            self.left = -1

        def on_train_begin(self, logs=None):
            self.serve()

        def on_train_batch_begin(self, batch, logs=None):
            if self.last is None:
                self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if self.left <= 0:
                return
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now
            self.left -= 1
            if self.left == 0:
                reply(times=self.times, cpu_s=time.process_time() - self.cpu0, loss=float(logs["batch_loss"]))
                self.serve()
                self.last = None

    fit_model.fit(data, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, verbose=0,
                  callbacks=[lr_control, recorder, Blocks()])


if __name__ == "__main__":
    main()
