"""Our Avro schemas, shipped as package data: ``<family>/v<major>_<minor>.avsc``.

Families: ``exposure`` (raw exposures / multi-band cutouts in) and ``classified`` (records
out). See ``schemas/README.md`` for the schema-id rules of each family.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

__all__ = ["SCHEMA_DIR", "SAMPLES_DIR", "schema_path", "load_schema", "available_versions", "latest_version"]

SCHEMA_DIR = Path(__file__).resolve().parent
#: Real survey packets bundled with the package (provenance and licences in its README).
SAMPLES_DIR = SCHEMA_DIR / "samples"
_VERSION_RE = re.compile(r"^v(\d+)_(\d+)\.avsc$")


def available_versions(family: str) -> list[tuple[int, int]]:
    """(major, minor) of every shipped version of ``family``, oldest first."""
    folder = SCHEMA_DIR / family
    found = [_VERSION_RE.match(p.name) for p in folder.glob("v*_*.avsc")] if folder.is_dir() else []
    return sorted((int(m.group(1)), int(m.group(2))) for m in found if m)


def latest_version(family: str) -> tuple[int, int]:
    versions = available_versions(family)
    if not versions:
        raise FileNotFoundError(f"no schemas shipped for {family!r} in {SCHEMA_DIR}")
    return versions[-1]


def schema_path(family: str, major: int, minor: int) -> Path:
    """Path of ``<family>/v<major>_<minor>.avsc`` (FileNotFoundError if not shipped)."""
    path = SCHEMA_DIR / family / f"v{major}_{minor}.avsc"
    if not path.is_file():
        raise FileNotFoundError(f"schema {family} v{major}.{minor} is not shipped ({path})")
    return path


@functools.cache
def _load_text(family: str, major: int, minor: int) -> str:
    return schema_path(family, major, minor).read_text()


def load_schema(family: str, major: int, minor: int) -> dict:
    """The schema as a fresh JSON dict (not parsed by fastavro; callers may edit their copy)."""
    return json.loads(_load_text(family, major, minor))
