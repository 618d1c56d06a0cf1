"""The teaching notebooks: committed clean, current with their generator, public API only, and each one
runs top to bottom in a fresh kernel of this project's interpreter and ends with a chart that has data.

Each notebook runs in a temporary working directory with its own WORKBENCH_RUNS_DIR, so the tests
never write the project's ./runs. Budget: a notebook must finish in NOTEBOOK_BUDGET_S on a laptop CPU.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = ["01_losses_and_gradient_descent", "02_lora_and_parameter_sharing",
            "03_hierarchical_and_adaptive_lr", "04_compare_runs"]
NOTEBOOKS = [NOTEBOOK_DIR / f"{stem}.ipynb" for stem in EXPECTED]
CELL_TIMEOUT_S = 240
NOTEBOOK_BUDGET_S = 300
PLOTLY = "application/vnd.plotly.v1+json"
KERNEL = "workbench-notebook-test"


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


# -- static checks -----------------------------------------------------------------------------------

def test_all_notebooks_exist_with_a_readme():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(p.name for p in NOTEBOOKS)
    assert (NOTEBOOK_DIR / "README.md").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {cell.id} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {cell.id} has an execution count"
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "What this notebook teaches" in first.source
    assert last.cell_type == "markdown" and "Questions" in last.source


def test_notebooks_match_their_generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert list(module.NOTEBOOKS) == EXPECTED
    for stem in EXPECTED:
        assert (NOTEBOOK_DIR / f"{stem}.ipynb").read_text(encoding="utf-8") == module.render(stem), (
            f"{stem}.ipynb differs from scripts/make_notebooks.py: edit the script and regenerate")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_uses_the_public_api_only(path):
    """The notebooks document the engine: no private names (`_x`), no private modules."""
    for cell in code_cells(path):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.ImportFrom):
                assert not any(part.startswith("_") for part in (node.module or "").split(".")), node.module
                name = next((a.name for a in node.names if a.name.startswith("_")), "")
            elif isinstance(node, ast.Import):
                name = next((a.name for a in node.names if any(p.startswith("_") for p in a.name.split("."))), "")
            else:
                continue
            assert not (name.startswith("_") and not name.startswith("__")), (
                f"{path.name} cell {cell.id} uses the private name {name!r}")


# -- execution ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernelspec that runs *this* interpreter (the venv's python), found through JUPYTER_PATH.

    The venv's own `python3` kernelspec says just "python", which is whatever PATH finds first.
    """
    share = tmp_path_factory.mktemp("jupyter")
    spec_dir = share / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "PEFT Workbench (tests)", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(share))
        yield KERNEL


def array_length(value) -> int:
    """Length of a Plotly data array: a JSON list, or a typed array {"dtype", "bdata"} (base64)."""
    if isinstance(value, dict) and "bdata" in value:
        return len(base64.b64decode(value["bdata"]))
    if isinstance(value, list):
        return sum(array_length(v) if isinstance(v, list | dict) else 1 for v in value)
    return 0


def trace_has_data(trace: dict) -> bool:
    if "z" in trace:
        return array_length(trace["z"]) > 0
    return array_length(trace.get("x")) > 0 and array_length(trace.get("y")) > 0


def figures(nb) -> list[dict]:
    return [out["data"][PLOTLY] for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if PLOTLY in out.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, kernel_name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("PLOTLY_RENDERER", raising=False)  # let plotly pick its Jupyter renderer
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT_S, allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - started

    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable
    assert seconds < NOTEBOOK_BUDGET_S, f"{path.name} took {seconds:.0f} s"
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error"
            assert "Traceback" not in out.get("text", ""), f"{path.name} cell {cell.id} printed a traceback"
    figs = figures(nb)
    assert figs, f"{path.name} shows no Plotly figure"
    last = figs[-1]
    assert last["data"] and all(trace_has_data(t) for t in last["data"]), (
        f"{path.name}: the last figure has an empty trace")
    assert not any(a.get("text") == "No data yet" for fig in figs for a in fig["layout"].get("annotations", [])), (
        f"{path.name} shows an empty chart")
    if path.stem != "01_losses_and_gradient_descent":  # the others train through the run store
        assert (tmp_path / "runs" / "workbench.db").is_file()
