"""The lock files cover pyproject.toml: every dependency pinned with hashes (run `make lock` after
changing dependencies, and commit the lock files with the change). The GPU image's lock
(requirements-gpu.lock, `make lock-gpu`) covers the gpu extra too, except TensorRT, which the
image's base provides (the Makefile's GPU_FROM_BASE_IMAGE says why)."""
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


def _versions(lock: str) -> dict[str, str]:
    return {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / lock).read_text(), re.M)}


def test_gpu_lock_covers_the_gpu_extra_with_hashes():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]} | {_name(r) for r in project["optional-dependencies"]["gpu"]}
    from_base = set(re.search(r"^GPU_FROM_BASE_IMAGE := (.+)$", (REPO / "Makefile").read_text(), re.M).group(1).split())
    assert from_base and all(name.startswith("tensorrt") for name in from_base), "only TensorRT may come from the base image"
    pins = _pins("requirements-gpu.lock")
    missing = sorted(wanted - set(pins) - from_base)
    assert not missing, f"requirements-gpu.lock lacks {missing}: run `make lock-gpu` and commit it"
    assert not set(pins) & from_base, "TensorRT is the base image's, never the lock's"
    assert "cuda-python" in wanted and pins["cuda-python"], "the gpu extra's other package is locked with hashes"
    unhashed = sorted(name for name, hashes in pins.items() if not hashes)
    assert not unhashed, f"requirements-gpu.lock: no hash for {unhashed}"
    # torch is PyPI's CUDA build, its CUDA wheels pinned with it
    assert _versions("requirements-gpu.lock")["torch"] == "2.13.0" and len(pins["torch"]) > 1
    assert any(name.startswith("nvidia-cuda-runtime") for name in pins)
    # the same versions as the runtime lock wherever both pin a package (it is the constraint)
    runtime, gpu = _versions("requirements-runtime.lock"), _versions("requirements-gpu.lock")
    differ = sorted(f"{n} {runtime[n]} != {gpu[n]}" for n in set(runtime) & set(gpu) if runtime[n] != gpu[n])
    assert not differ, differ
