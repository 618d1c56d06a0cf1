"""GPU benchmark: the workbench engine on JAX vs Hugging Face transformers + peft on PyTorch.

    KERAS_BACKEND=jax python benchmarks/gpu.py --stack keras     # the workbench engine (no TensorFlow)
    python benchmarks/gpu.py --stack torch                       # the peer, same shapes
    KERAS_BACKEND=tensorflow python benchmarks/gpu.py --stack keras --smoke   # tiny shapes, 2 steps, any CPU
    python benchmarks/gpu.py --stack keras --cpu-shape --in-process          # MiniLM dims, batch 8 × 32 (bench 1c)

Model: a MiniLM-L6-shaped encoder with random weights (vocab 30522, 6 layers, hidden 384, 12 heads,
FFN 1536; no tokenizer), batch 256 × 128 tokens, binary classification, AdamW; full fine-tuning vs
LoRA r=8 (alpha 16) on query/value; fp32 and bf16 (`mixed_bfloat16` / torch autocast).

The keras side goes through the engine, not a bare model: `bert_task_model` (masked mean pooling +
head), `apply_method` (our FlatLora layers), `trainer.compile_model` (BatchLoss, XLA per device),
`make_optimizer`, `training_feed` and the `Recorder` writing every step's loss to a run store; then, in
the same process, bare Keras on the same model definition (`compile` + `fit(x, y)`, no callbacks): the
engine's overhead as a throughput ratio. Both are timed as whole `fit` calls after a warm-up `fit`.
It imports no TensorFlow module and writes no TensorBoard files. On the H200 machine (no TensorFlow, no
Keras) `benchmarks/gpu_device.sh` installs the carried wheels (`make gpu-wheels`) and runs both stacks.

Each keras configuration runs in a process of its own (JAX's peak-memory counter cannot be reset;
`--in-process` shares one). Each prints one JSON line: ms/step, tokens/s, trainable/total params, peak device
memory and MFU = model FLOPs per step / step time / 790 TFLOP/s (H200 dense bf16), where model FLOPs
= 3 × forward for full fine-tuning and 2 × forward for LoRA (no weight gradients for frozen
matrices); forward = 2 · (matmul parameters) · tokens + 4 · layers · seq · hidden · tokens.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEAK_FLOPS = 790e12
# `repeats`: timed engine/bare pairs, alternated; the ratio reported is their median.
FULL = dict(vocab=30522, layers=6, hidden=384, heads=12, ffn=1536, batch=256, seq=128, warmup=10, steps=100, repeats=3)
SMOKE = dict(vocab=1000, layers=2, hidden=64, heads=2, ffn=128, batch=8, seq=16, warmup=1, steps=2, repeats=1)
# MiniLM's own dims at a batch a 2-core CPU steps through in ~0.1 s: `make bench` row 1c (engine vs bare on JAX).
CPU = dict(FULL, batch=8, seq=32, warmup=5, steps=20)


def model_flops(shape: dict, method: str) -> float:
    h, f, n_layers, seq = shape["hidden"], shape["ffn"], shape["layers"], shape["seq"]
    tokens = shape["batch"] * seq
    matmul_params = n_layers * (4 * h * h + 2 * h * f)
    forward = 2 * matmul_params * tokens + 4 * n_layers * seq * h * tokens
    return (3 if method == "full" else 2) * forward


def emit(record: dict, out: Path | None) -> None:
    record = {**record, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as fh:
            fh.write(line + "\n")


# -- the workbench engine (Keras 3; JAX on the GPU machine) -----------------------------------------
def _task_model(shape: dict, method: str, prec: str):
    """(task model, TrainConfig, PEFT report, inputs, labels): the engine's MiniLM-shaped classifier."""
    import keras_hub
    import numpy as np

    from workbench.config import TrainConfig
    from workbench.models.base import BuildContext
    from workbench.models.bert import bert_task_model
    from workbench.models.registry import get_model_card
    from workbench.peft import apply_method

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=shape["vocab"], num_layers=shape["layers"], num_heads=shape["heads"],
        hidden_dim=shape["hidden"], intermediate_dim=shape["ffn"], max_sequence_length=max(512, shape["seq"]))
    n = shape["batch"] * max(shape["warmup"], shape["steps"])
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, shape["vocab"], (n, shape["seq"]), dtype="int32"),
         "padding_mask": np.ones((n, shape["seq"]), bool), "segment_ids": np.zeros((n, shape["seq"]), "int32")}
    y = rng.integers(0, 2, n).astype("int32")
    ctx = BuildContext(task="classification", num_classes=2, x_train=np.array(["x"] * n), y_train=y,
                       max_seq_len=shape["seq"])
    task_model = bert_task_model(backbone, None, get_model_card("minilm-l6"), ctx, "gpu-bench")
    config = TrainConfig.from_dict(dict(  # flat rank/alpha: LoRA's options (at their defaults, ignored by full)
        model="minilm-l6", data="sms-spam", method=method, rank=8, alpha=16.0, batch_size=shape["batch"],
        max_seq_len=shape["seq"], epochs=1, mixed_precision="mixed_bfloat16" if prec == "bf16" else "off",
        export_model=False))
    report = apply_method(task_model, config)
    return task_model, config, report, x, y


def _seconds_per_step(fit, steps: int) -> float:
    """Whole-`fit` wall time over `steps` batches, as the reference's bare Keras was measured (the last
    step's result is waited for when `fit` returns: Keras reads the final logs)."""
    t = time.perf_counter()
    fit(steps)
    return (time.perf_counter() - t) / steps


def keras_run(shape: dict, method: str, prec: str) -> dict:
    """The engine (task model, FlatLora, compile_model, grouped LR control, feed, per-step Recorder) vs bare
    Keras on the same model (`compile` + `fit(x, y)`, no callbacks, no metrics), side by side."""
    import keras
    import numpy as np

    from workbench.runs.store import RunStore
    from workbench.train.callbacks import LiveState, Recorder
    from workbench.train.device import device_name
    from workbench.train.feed import training_feed
    from workbench.train.lr_control import LearningRateControl, make_optimizer
    from workbench.train.trainer import Prepared, compile_model, trainable_groups

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("mixed_bfloat16" if prec == "bf16" else "float32")
    try:
        # 1. the engine, as `trainer.train` drives it (minus validation and export)
        task_model, config, report, x, y = _task_model(shape, method, prec)
        dataset = types.SimpleNamespace(card=types.SimpleNamespace(task="classification", modality="text"))
        prepared = Prepared(config, dataset, None, task_model, report, {"train": x})
        lr = config.resolved_lr("text")
        optimizer, group_optimizers = make_optimizer(config, lr, trainable_groups(task_model))
        total_steps = shape["warmup"] + shape["steps"] * shape["repeats"]
        lr_control = LearningRateControl(config, lr, total_steps, group_optimizers)
        compile_model(prepared, optimizer)
        store = RunStore(tempfile.mkdtemp(prefix="wb-gpu-bench-"))
        run_id = store.create_run(config.to_dict(), "gpu bench", status="running")
        recorder = Recorder(store, run_id, LiveState(), n_train=len(y), batch_size=shape["batch"],
                            lr_reader=lr_control.current)

        def engine_fit(steps: int) -> None:
            data, _ = training_feed(x, y, batch_size=shape["batch"], epochs=1, seed=0)
            task_model.model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[lr_control, recorder])

        engine_fit(shape["warmup"])  # compiles
        engine_times = [_seconds_per_step(engine_fit, shape["steps"])]
        peak = _keras_peak_mb()  # before the bare model exists
        jit = bool(task_model.model.jit_compile)

        # 2. bare Keras: the same model definition, plain compile + fit; then the two alternate
        bare_model, *_ = _task_model(shape, method, prec)
        bare_model.model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=config.weight_decay),
                                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)

        def bare_fit(steps: int) -> None:
            bare_model.model.fit(x, y, batch_size=shape["batch"], steps_per_epoch=steps, epochs=1, verbose=0)

        bare_fit(shape["warmup"])
        bare_times = [_seconds_per_step(bare_fit, shape["steps"])]
        for _ in range(shape["repeats"] - 1):
            engine_times.append(_seconds_per_step(engine_fit, shape["steps"]))
            bare_times.append(_seconds_per_step(bare_fit, shape["steps"]))
        dt, bare_dt = statistics.median(engine_times), statistics.median(bare_times)
        ratio = statistics.median([b / e for e, b in zip(engine_times, bare_times, strict=True)])
        losses = store.metrics(run_id, keys=["train/loss"]).value

        return {"stack": f"workbench (keras {keras.__version__} + {keras.backend.backend()})", "device": device_name(),
                "method": method, "prec": prec, "B": shape["batch"], "seq": shape["seq"],
                "ms_per_step": round(1000 * dt, 2), "tokens_per_s": int(shape["batch"] * shape["seq"] / dt),
                "mfu": round(model_flops(shape, method) / dt / PEAK_FLOPS, 4),
                "bare_ms_per_step": round(1000 * bare_dt, 2), "engine_over_bare_throughput": round(ratio, 3),
                "pairs": len(engine_times),
                "trainable": report.trainable, "total": report.total, "peak_mem_mb": peak,
                "jit": jit, "losses_recorded": int(len(losses)),
                "loss_finite": bool(np.isfinite(losses).all()), "tensorflow_imported": sys.modules.get("tensorflow") is not None}
    finally:
        keras.config.set_dtype_policy("float32")


def _keras_peak_mb() -> int | None:
    import keras

    try:
        if keras.backend.backend() == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return int(stats["peak_bytes_in_use"] / 2**20)
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return int(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20)
    except Exception:  # noqa: BLE001 - memory statistics are best effort
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # CPU: the process's peak RSS


# -- the peer: Hugging Face transformers + peft on PyTorch ---------------------------------------------
def torch_run(shape: dict, method: str, prec: str) -> dict:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    config = BertConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                        num_attention_heads=shape["heads"], intermediate_size=shape["ffn"], num_labels=2,
                        max_position_embeddings=max(512, shape["seq"]), attn_implementation="sdpa")
    model = BertForSequenceClassification(config).to(device)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                                 lora_dropout=0.0, task_type="SEQ_CLS"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3 if method == "lora" else 5e-5, weight_decay=0.01)
    x = torch.randint(1, shape["vocab"], (shape["batch"], shape["seq"]), device=device)
    y = torch.randint(0, 2, (shape["batch"],), device=device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=prec == "bf16"):
            loss = model(input_ids=x, labels=y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(shape["warmup"]):
        step()
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(shape["steps"]):
        step()
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / shape["steps"]
    import resource

    peak = (int(torch.cuda.max_memory_allocated() / 2**20) if cuda
            else int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return {"stack": f"torch {torch.__version__} + peft", "device": torch.cuda.get_device_name() if cuda else "cpu",
            "method": method, "prec": prec, "B": shape["batch"], "seq": shape["seq"],
            "ms_per_step": round(1000 * dt, 2), "tokens_per_s": int(shape["batch"] * shape["seq"] / dt),
            "mfu": round(model_flops(shape, method) / dt / PEAK_FLOPS, 4),
            "trainable": sum(p.numel() for p in params), "total": sum(p.numel() for p in model.parameters()),
            "peak_mem_mb": peak}


def isolated(args: argparse.Namespace, method: str, prec: str) -> int:
    """One keras configuration in a fresh process: JAX's peak-memory counter cannot be reset, so configurations
    sharing a process would all report the largest peak so far. Returns 1 if it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stack", "keras", "--in-process",
           "--methods", method, "--precisions", prec, *(["--smoke"] if args.smoke else []),
           *(["--cpu-shape"] if args.cpu_shape else []),
           *(["--out", str(args.out)] if args.out else [])]
    try:
        child = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False,  # stderr passes through
                               timeout=args.config_timeout)
        stdout, code = child.stdout, child.returncode
    except subprocess.TimeoutExpired as exc:
        stdout, code = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), "timeout"
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        print("\n".join(lines), flush=True)
    else:  # died before printing (crash, OOM kill, timeout): still one line for this configuration
        emit({"stack": "keras", "method": method, "prec": prec,
              "error": f"process ended without a result: exit {code} (timeout {args.config_timeout} s)"}, args.out)
    return 1 if code or not lines else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["keras", "torch"], default="keras")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 2 steps (runs on any CPU)")
    parser.add_argument("--cpu-shape", action="store_true", help="MiniLM dims at batch 8 × 32, 30 steps (CPU)")
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    parser.add_argument("--in-process", action="store_true",
                        help="keras: run every configuration in this process (default: one process each)")
    parser.add_argument("--config-timeout", type=float, default=150.0,
                        help="keras: seconds one configuration's process may take (import, XLA compile, steps)")
    args = parser.parse_args()
    shape = SMOKE if args.smoke else CPU if args.cpu_shape else FULL
    run = keras_run if args.stack == "keras" else torch_run
    failures = 0
    for method in args.methods.split(","):
        for prec in args.precisions.split(","):
            if args.stack == "keras" and not args.in_process:
                failures += isolated(args, method, prec)
                continue
            try:
                emit(run(shape, method, prec), args.out)
            except Exception as exc:  # noqa: BLE001 - one failed configuration must not hide the others
                failures += 1
                emit({"stack": args.stack, "method": method, "prec": prec, "error": f"{type(exc).__name__}: {exc}"[:500]},
                     args.out)
            gc.collect()
            if args.stack == "keras":
                import keras

                keras.backend.clear_session()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if "--stack" not in sys.argv or "keras" in sys.argv:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    main()
