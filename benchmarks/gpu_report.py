"""The GPU section of `results.md`, rendered from the JSON lines of one `benchmarks/gpu_device.sh` run.

A session lent the H200 machine runs the device call below, copies the `gpu_keras.jsonl` and
`gpu_torch.jsonl` it returns into `benchmarks/gpu/`, and runs `python -m benchmarks.gpu_report`: that
re-renders `results.md` from `results.json` (no CPU row is measured again) with this section filled in.
Targets (issue "Performance", GPU run): the workbench's LoRA tokens/s ≥ 1.3× Hugging Face peft's, and the
engine within 5 % of bare Keras on the same model (`engine_over_bare_throughput` ≥ 0.95).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "gpu"
PEER_TARGET, BARE_TARGET = 1.3, 0.95

INSTRUCTIONS = """\
The H200 machine lent to some sessions has JAX 0.11.2, PyTorch, transformers and peft but no TensorFlow and no
Keras, and no network; Keras travels as wheels. Here first (needs PyPI; 4.5 MB into the ignored `.whl/`: keras
3.15.1, keras-hub 0.32.0, namex 0.1.0, optree 0.20.0 for cp312):

    make gpu-wheels

then ONE call of the device tool (`run`), from the repository root:

    command: bash benchmarks/gpu_device.sh
    carry:   [".whl"]
    timeout_s: 540

`benchmarks/gpu_device.sh` installs the wheels into `/tmp/site`, prints the GPU and the JAX/Keras versions, runs
`KERAS_BACKEND=jax python3 benchmarks/gpu.py --stack keras` (each configuration in its own process, 120 s each at
most: the engine, then bare Keras on the same model) and `python3 benchmarks/gpu.py --stack torch` with
`PYTHONUNBUFFERED=1`; the JSON lines come back in `gpu_keras.jsonl` and `gpu_torch.jsonl`, the log in `gpu.log`.
Worst case 8 min (its timeouts), expected 2–4. Copy the two files into `benchmarks/gpu/` and run
`python -m benchmarks.gpu_report` to fill this section.

Checked without a GPU: the same script with `GPU_BENCH_ARGS=--smoke` on Python 3.12 + jax 0.11.2 (CPU) + only
the device's packages and these wheels ran all four keras configurations; `tests/test_jax_backend.py` (CI) runs
the keras smoke, a staged CLI run and `tests/test_hierarchical.py` under JAX with every package the device
lacks (TensorFlow included) hidden, and checks that the engine's callbacks leave Keras free to dispatch steps
asynchronously (a per-step wait for the loss would leave the GPU idle between steps).
"""

ABOUT = """\
`benchmarks/gpu.py` trains a MiniLM-L6-shaped encoder (keras-hub `BertBackbone`, random weights, vocab 30522, 6
layers, hidden 384, 12 heads, FFN 1536) through the workbench engine (task model, FlatLora LoRA r=8 on
query/value, `compile_model`, the engine's feed, LR control and per-step recording), then bare Keras on the same
model definition (`compile` + `fit(x, y)`, no callbacks), batch 256 × 128, full vs LoRA, fp32 and bf16; and the
same shapes with Hugging Face transformers + peft. Each is timed as whole `fit` calls (or a loop) of 100 steps
after 10 warm-up steps, engine and bare alternated 3 times (medians). MFU is against 790 TFLOP/s (bf16 dense).
Each keras line reports `tensorflow_imported` (false under JAX). Reference (`../shared/reference/`, H200, a
hand-built bare Keras/JAX model vs torch, fp32): LoRA
17.1 ms vs 25.8 ms per step, full 23.4 ms vs 29.2 ms.
"""


def load(directory: Path = RESULTS_DIR) -> tuple[list[dict], list[dict]]:
    """(keras records, torch records) from `gpu_keras.jsonl` / `gpu_torch.jsonl`; empty when not run."""
    def read(name: str) -> list[dict]:
        path = directory / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]
    return read("gpu_keras.jsonl"), read("gpu_torch.jsonl")


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**MISS**"


def rows(keras_records: list[dict], torch_records: list[dict]) -> tuple[list[list[str]], list[str]]:
    """Table rows (What, How, Measured, Against, Ratio, Target, Result) and notes on misses and failures."""
    table: list[list[str]] = []
    notes: list[str] = []
    peer = {(r["method"], r["prec"]): r for r in torch_records if "error" not in r}
    for record in keras_records + torch_records:
        if "error" in record:
            notes.append(f"- {record.get('stack')} {record.get('method')} {record.get('prec')} failed: {record['error']}")
    for r in (r for r in keras_records if "error" not in r):
        key = (r["method"], r["prec"])
        name = f"{r['method']} {r['prec']}"
        ratio = r["engine_over_bare_throughput"]
        table.append([f"G. Engine vs bare Keras, {name}", "same model, batch 256 × 128; engine = task model + "
                      "FlatLora + LR control + per-step Recorder; throughput ratio",
                      f"{r['ms_per_step']:.2f} ms/step", f"bare {r['bare_ms_per_step']:.2f} ms/step",
                      f"{ratio:.2f}×", f"≥ {BARE_TARGET}×", _verdict(ratio >= BARE_TARGET)])
        if key in peer:
            p = peer[key]
            vs = r["tokens_per_s"] / p["tokens_per_s"]
            target = r["method"] == "lora"
            table.append([f"G. Workbench vs HF peft, {name}", f"{r['tokens_per_s']:,} vs {p['tokens_per_s']:,} "
                          f"tokens/s; MFU {r['mfu']:.1%} vs {p['mfu']:.1%}; peak memory {r['peak_mem_mb']:,} vs "
                          f"{p['peak_mem_mb']:,} MiB", f"{r['ms_per_step']:.2f} ms/step", f"{p['ms_per_step']:.2f} ms/step",
                          f"{vs:.2f}×", f"≥ {PEER_TARGET}×" if target else "(info)",
                          _verdict(vs >= PEER_TARGET) if target else "—"])
            if target and vs < PEER_TARGET:
                notes.append(f"- **MISS** {name}: workbench/peer {vs:.2f}× (target {PEER_TARGET}×).")
        if ratio < BARE_TARGET:
            notes.append(f"- **MISS** {name}: engine/bare {ratio:.2f}× (target {BARE_TARGET}×).")
    return table, notes


def section(directory: Path = RESULTS_DIR) -> str:
    """The markdown under `## GPU`: the results when `directory` holds them, else how to produce them."""
    keras_records, torch_records = load(directory)
    if not keras_records and not torch_records:
        return "Not run yet (no GPU lent to the sessions so far).\n\n" + INSTRUCTIONS + "\n" + ABOUT
    first = next((r for r in keras_records + torch_records if "device" in r), {})
    table, notes = rows(keras_records, torch_records)
    lines = [f"Measured on {first.get('device', 'the GPU machine')}"
             + (f", {first['when']}" if "when" in first else "") + " (`benchmarks/gpu/*.jsonl`).", "",
             "| What | How | Measured | Against | Ratio | Target | Result |", "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    if notes:
        lines += ["", "Misses and failures:", "", *notes]
    return "\n".join(lines) + "\n\n" + ABOUT + "\nTo run it again:\n\n" + INSTRUCTIONS


def main() -> None:
    from benchmarks import report

    results = json.loads((HERE / "results.json").read_text())
    (HERE / "results.md").write_text(report.render(results))
    print(section())


if __name__ == "__main__":
    main()
