"""The arrows point one way: schemas <- engines <- stream (../shared/design/architecture.md).

Every module's imports (top level and inside functions) are read from its AST, so a lazy
import cannot slip past. ``benchmarks/`` and ``tests/`` may use everything.
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


def test_contract_sees_lazy_imports(tmp_path):
    """The reader finds an import hidden in a function body (what the contract relies on)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from stream.config import Settings\n    import torch\n")
    assert [name for _, name in _imports(module)] == ["stream.config", "torch"]
