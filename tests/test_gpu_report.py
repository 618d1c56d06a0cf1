"""The GPU section of benchmarks/results.md: targets judged from the device run's JSON lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import gpu_report  # noqa: E402


def _write(directory: Path, name: str, records: list[dict]) -> None:
    (directory / name).write_text("".join(json.dumps(r) + "\n" for r in records))


def keras_record(method: str, prec: str, ms: float, bare_ms: float) -> dict:
    return {"stack": "workbench (keras 3.15.1 + jax)", "device": "GPU: NVIDIA H200 (jax)", "when": "2026-12-01 10:00 UTC",
            "method": method, "prec": prec, "ms_per_step": ms, "tokens_per_s": int(256 * 128 / ms * 1000),
            "mfu": 0.3, "bare_ms_per_step": bare_ms, "engine_over_bare_throughput": round(bare_ms / ms, 3),
            "peak_mem_mb": 9000}


def torch_record(method: str, prec: str, ms: float) -> dict:
    return {"stack": "torch 2.11.0 + peft", "device": "NVIDIA H200", "method": method, "prec": prec, "ms_per_step": ms,
            "tokens_per_s": int(256 * 128 / ms * 1000), "mfu": 0.2, "peak_mem_mb": 12000}


def test_without_results_the_section_says_how_to_run_it(tmp_path):
    text = gpu_report.section(tmp_path)
    assert text.startswith("Not run yet") and "bash benchmarks/gpu_device.sh" in text and '[".whl"]' in text


def test_targets_are_judged_from_the_records(tmp_path):
    _write(tmp_path, "gpu_keras.jsonl", [keras_record("lora", "bf16", 17.0, 16.5), keras_record("full", "bf16", 25.0, 22.0),
                                         {"stack": "keras", "method": "lora", "prec": "fp32", "error": "boom"}])
    _write(tmp_path, "gpu_torch.jsonl", [torch_record("lora", "bf16", 29.5), torch_record("full", "bf16", 30.0)])
    table, notes = gpu_report.rows(*gpu_report.load(tmp_path))
    verdicts = {row[0]: (row[4], row[6]) for row in table}
    assert verdicts["G. Engine vs bare Keras, lora bf16"] == ("0.97×", "**PASS**")
    assert verdicts["G. Engine vs bare Keras, full bf16"] == ("0.88×", "**MISS**")
    assert verdicts["G. Workbench vs HF peft, lora bf16"] == ("1.74×", "**PASS**")
    assert verdicts["G. Workbench vs HF peft, full bf16"][1] == "—"  # the 1.3× target is LoRA's
    assert any("lora fp32 failed: boom" in n for n in notes) and any("engine/bare 0.88×" in n for n in notes)
    text = gpu_report.section(tmp_path)
    assert "Measured on GPU: NVIDIA H200 (jax), 2026-12-01 10:00 UTC" in text and "| G. Workbench vs HF peft" in text
