"""The arrows point one way: schemas <- engines <- stream (../shared/design/architecture.md).

Every module's imports (top level and inside functions) are read from its AST, so a lazy
import cannot slip past. ``benchmarks/`` and ``tests/`` may use everything.

Research and training are fenced off from serving: nothing in ``schemas/``, ``engines/`` or
``stream/`` imports ``research`` (the studies, out of the wheel and the images), and only
``engines/training/`` itself and the offline commands that run it (:data:`TRAINING_COMMANDS`)
import ``engines.training``.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Third-party roots each layer may import (beside the standard library and the layers below).
SCHEMAS_ALLOWED = {"numpy", "fastavro", "astropy", "pyarrow", "cramjam", "zstandard", "lsst"}
FORBIDDEN = {
    # layer: top-level names it must never import
    "schemas": {"stream", "engines", "torch", "confluent_kafka", "redis", "urllib", "http", "requests", "socket"},
    "engines": {"stream", "confluent_kafka", "redis"},
}
#: The command modules that run the training library (train, evaluate, stamps; classify's
#: --agreement-report): the only modules outside engines/training that may import it.
TRAINING_COMMANDS = {"stream/commands/train.py", "stream/commands/evaluate.py", "stream/commands/stamps.py",
                     "stream/commands/classify.py"}
PRODUCT_LAYERS = ("schemas", "engines", "stream")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _modules(layer: str) -> list[Path]:
    return sorted(p for p in (REPO / layer).rglob("*.py") if "samples" not in p.parts)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_never_imports_upward_or_io(layer):
    bad = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in _modules(layer)
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN[layer]
    ]
    assert not bad, f"{layer}/ imports what it must not:\n" + "\n".join(bad)


def test_schemas_imports_only_data_libraries():
    stdlib = set(sys.stdlib_module_names) - {"urllib", "http", "socket"}
    bad = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in _modules("schemas")
        for line, name in _imports(path)
        if (root := name.split(".")[0]) not in stdlib and root not in SCHEMAS_ALLOWED and root != "schemas"
    ]
    assert not bad, "schemas/ may import only the standard library and " + ", ".join(sorted(SCHEMAS_ALLOWED)) + ":\n" + "\n".join(bad)


def _is_module(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def test_product_never_imports_research():
    bad = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for layer in PRODUCT_LAYERS
        for path in _modules(layer)
        for line, name in _imports(path)
        if _is_module(name, "research")
    ]
    assert not bad, "schemas/, engines/ and stream/ must not import research/ (study code, not shipped):\n" + "\n".join(bad)


def test_serving_code_never_imports_training():
    training = REPO / "engines" / "training"
    bad = [
        f"{rel}:{line}: {name}"
        for layer in ("engines", "stream")
        for path in _modules(layer)
        if training not in path.parents and (rel := path.relative_to(REPO).as_posix()) not in TRAINING_COMMANDS
        for line, name in _imports(path)
        if _is_module(name, "engines.training") or (name == "engines" and _imports_training_by_name(path))
    ]
    assert not bad, ("serving modules (engines/ outside engines/training, stream/ outside the training commands) "
                     "must not import engines.training or research:\n" + "\n".join(bad))


def _imports_training_by_name(path: Path) -> bool:
    """``from engines import training`` reaches the package too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(isinstance(node, ast.ImportFrom) and node.module == "engines" and any(a.name == "training" for a in node.names)
               for node in ast.walk(tree))


def test_training_fence_sees_what_it_must(tmp_path):
    """The fence's readers find the three ways in: a dotted import, a from-import and a package import."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import engines.training.train\n    from research.training import heldout\n"
                      "    from engines import training\n")
    names = [name for _, name in _imports(module)]
    assert _is_module(names[0], "engines.training") and _is_module(names[1], "research") and _imports_training_by_name(module)
    assert not _is_module("engines.trainingwheels", "engines.training")


def test_contract_sees_lazy_imports(tmp_path):
    """The reader finds an import hidden in a function body (what the contract relies on)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from stream.config import Settings\n    import torch\n")
    assert [name for _, name in _imports(module)] == ["stream.config", "torch"]
