"""Files in the engine cache are not trusted blindly: each is used only while its sha256 matches
the one recorded beside it (``<file>.sha256``) when we wrote it.

A planted or damaged file (a zero-weight ONNX, a truncated TensorRT plan) has no record, or a
record that no longer matches, and is rebuilt from the card's weights instead of scoring alerts.
The ONNX exports (:meth:`engines.registry.Registry.export`) and the TensorRT plans
(:mod:`engines.backends.tensorrt_backend`) both go through here.
"""
from __future__ import annotations

import os
from pathlib import Path

from engines.export import file_sha256

__all__ = ["record_path", "why_untrusted", "record_sha256"]


def record_path(path: Path) -> Path:
    """Where the sha256 of ``path`` is recorded."""
    return path.with_name(path.name + ".sha256")


def why_untrusted(path: Path) -> str | None:
    """None when ``path`` exists and matches the sha256 recorded when it was written; else why not."""
    if not path.is_file():
        return "missing"
    record = record_path(path)
    recorded = record.read_text().strip() if record.is_file() else ""
    if not recorded:
        return "no sha256 recorded when it was written"
    if recorded != file_sha256(path):
        return "sha256 differs from the one recorded when it was written"
    return None


def record_sha256(path: Path) -> None:
    """Record the sha256 of ``path`` beside it (atomically), once the file is complete."""
    record = record_path(path)
    tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")    # this process's own: writers may share the folder
    tmp.write_text(file_sha256(path) + "\n")
    tmp.replace(record)
