"""The PEFT method names, known without importing Keras.

Why a module of its own: every `TrainConfig` checks its method when it is built, and the CLI must
refuse a bad flag or TOML file before TensorFlow's multi-second import. Once `workbench.peft` is
imported its registry is the truth; before that, the `@register("name", …)` calls in the package's
sources are the whole list (issue 13 will replace this scan by a light declaration per method).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
from pathlib import Path


def method_names() -> list[str]:
    """The PEFT method names, without importing Keras when the method registry is not loaded yet.

    Why: every config is validated when it is built, and the CLI must refuse a bad flag or TOML file
    before TensorFlow's multi-second import. Once `workbench.peft` is imported its registry is the
    truth (it also holds methods registered at run time); before that nothing can have registered
    anything, so the `@register("name", …)` calls in the package's modules are the whole list.
    """
    peft = sys.modules.get("workbench.peft")
    if peft is not None and hasattr(peft, "method_names"):
        return peft.method_names()
    return list(_declared_methods())


@functools.cache
def _declared_methods() -> tuple[str, ...]:
    spec = importlib.util.find_spec("workbench.peft")  # imports `workbench` only, not the package
    names: set[str] = set()
    for folder in spec.submodule_search_locations if spec is not None else ():
        for path in sorted(Path(folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "register"
                        and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                    names.add(node.args[0].value)
    return tuple(sorted(names))
