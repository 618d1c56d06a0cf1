"""The module graph: no import cycles inside `workbench/`, and a config is built without Keras.

Why: a cycle works until someone imports the modules in another order (then a name is missing from
a half-initialised module); and the CLI refuses a bad flag or TOML file before TensorFlow's
multi-second import, which holds only while `workbench.config` pulls in no Keras.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_edges(path: Path, modules: set[str]) -> set[str]:
    """Workbench modules `path` imports while it is itself being imported: module level, outside
    `if TYPE_CHECKING:` (imports inside functions run later, once every module is complete)."""
    edges: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "") in modules:
            # `from pkg import sub` needs the submodule; `from pkg import name` the package's __init__
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                edges.add(sub if sub in modules else node.module)
    return edges - {_module_name(path)}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_inside_the_engine():
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _import_time_edges(p, modules) for p in paths}
    assert sum(len(e) for e in graph.values()) > 50  # the parser sees the real graph
    assert _cycles(graph) == []


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_building_a_config_imports_no_keras():
    """The method registry loads (every method's options are validated) but no method's Keras layers."""
    code = ("import sys; from workbench.config import TrainConfig; "
            "TrainConfig(model='tiny-bert', data='sms-spam', method='lora', hierarchical='bottom-up'); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'workbench.peft.lora_layers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
