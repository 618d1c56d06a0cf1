"""The engine never imports Streamlit: notebooks, the CLI and worker threads must run without it.

Imports every module under `workbench/` in a fresh interpreter (this test process may already have
Streamlit loaded by the app tests) and checks `sys.modules` afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, json, pkgutil, sys
import workbench
names = ["workbench"]
for info in pkgutil.walk_packages(workbench.__path__, prefix="workbench."):
    importlib.import_module(info.name)
    names.append(info.name)
print(json.dumps({"modules": names, "streamlit": sorted(m for m in sys.modules if m.split(".")[0] == "streamlit")}))
"""


def test_engine_imports_without_streamlit() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "workbench.presets" in report["modules"] and "workbench.runs.manager" in report["modules"]
    assert len(report["modules"]) > 20
    assert report["streamlit"] == [], f"engine modules pulled in {report['streamlit'][:5]}"
