"""The lock files cover pyproject.toml: every dependency pinned with hashes (run `make lock` after
changing dependencies, and commit the lock files with the change)."""
from __future__ import annotations

import re
import tomllib

import pytest

from tests.conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(lock: str) -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    current = None
    for line in (REPO / lock).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            current = m.group(1).lower().replace("_", "-")
            pins[current] = []
        elif current and "--hash=sha256:" in line:
            pins[current].append(line.split("--hash=sha256:")[1].split()[0])
    return pins


@pytest.mark.parametrize("lock, extras", [("requirements.lock", ("test",)), ("requirements-runtime.lock", ())])
def test_every_dependency_is_pinned_with_hashes(lock, extras):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in extras:
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    pins = _pins(lock)
    missing = sorted(wanted - set(pins))
    assert not missing, f"{lock} lacks {missing}: run `make lock` and commit it"
    unhashed = sorted(name for name, hashes in pins.items() if not hashes)
    assert not unhashed, f"{lock}: no hash for {unhashed}"
    assert pins["torch"], "torch pinned with the CPU wheel's hash"
