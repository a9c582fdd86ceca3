"""The Dockerfiles pin torch, install the project after it, and run as a non-root user."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .deployfiles import DEPLOY, REPO, entrypoint_env_names, literal_env_names, settings_env_names

DOCKER = DEPLOY / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                joined.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined]


def test_cpu_torch_is_pinned_and_installed_before_the_project():
    runs = [args for ins, args in _instructions(DOCKERFILES["cpu"]) if ins == "RUN"]
    torch_runs = [i for i, a in enumerate(runs) if re.search(r"\btorch==2\.13\.0\b", a)]
    project_runs = [i for i, a in enumerate(runs) if re.search(r"pip install \. --no-deps(\s|$)", a)]
    assert torch_runs and project_runs and max(torch_runs) < min(project_runs)
    (torch_run,) = [runs[i] for i in torch_runs if "pip install" in runs[i]]
    assert re.search(r"--index-url (\S+)", torch_run).group(1) == "https://download.pytorch.org/whl/cpu"
    assert not re.search(r"\btorch(?!==2\.13\.0)[=<>~!]", " ".join(runs)), "another torch version is mentioned"


def test_gpu_image_installs_every_package_from_the_hashed_gpu_lock():
    """#23: the GPU image resolves nothing: the hash-checked GPU lock (torch, CUDA wheels and the
    gpu extra included), then the project with --no-deps; TensorRT is the base image's."""
    instructions = _instructions(DOCKERFILES["gpu"])
    runs = [args for ins, args in instructions if ins == "RUN"]
    installs = [re.sub(r"\s+", " ", m) for a in runs for m in re.findall(r"pip install [^&]*", a)]
    assert [i.strip() for i in installs] == ["pip install --require-hashes --no-deps -r requirements-gpu.lock",
                                             "pip install . --no-deps --no-build-isolation"]
    assert "--index-url" not in " ".join(runs) and "[gpu]" not in " ".join(runs), "nothing from outside the lock"
    copies = [a.split()[:-1] for ins, a in instructions if ins == "COPY"]
    assert ["requirements-gpu.lock"] in copies
    lock = (REPO / "requirements-gpu.lock").read_text()
    assert re.search(r"^torch==2\.13\.0 \\\n\s+--hash=sha256:", lock, re.M), "torch pinned with hashes"
    # the lock's Python (Makefile GPU_PYTHON) is the one the image checks for
    python = re.search(r"^GPU_PYTHON := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert f"sys.version_info[:2] == ({python.replace('.', ', ')})" in " ".join(runs)
    assert "find_spec('tensorrt')" in " ".join(runs), "TensorRT comes from the base image"
    assert not re.search(r"\btorch(?!==2\.13\.0)[=<>~!]", " ".join(runs) + lock), "another torch version is mentioned"


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_runs_as_non_root(kind):
    instructions = _instructions(DOCKERFILES[kind])
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    users = [args.split(":")[0] for ins, args in instructions[last_from:] if ins == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert int(users[-1]) >= 1000 if users[-1].isdigit() else True


def test_gpu_image_uses_tensorrt_base_and_builds_engines_at_start():
    instructions = _instructions(DOCKERFILES["gpu"])
    args = dict((a.split("=", 1)[0].split()[-1], a.split("=", 1)[1]) for ins, a in instructions if ins == "ARG" and "=" in a)
    assert args["TENSORRT_IMAGE"].startswith("nvcr.io/nvidia/tensorrt:")
    entry = (DOCKER / "entrypoint.sh").read_text()
    assert "survey-classifier engines build --backend tensorrt" in entry
    env = " ".join(a for ins, a in instructions if ins == "ENV")
    assert "SURVEY_CLASSIFIER_BUILD_ENGINES=1" in env


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_service_command_and_entrypoint(kind):
    instructions = _instructions(DOCKERFILES[kind])
    cmd = [a for ins, a in instructions if ins == "CMD"][-1]
    assert cmd == '["run", "--config", "/etc/survey-classifier/config.toml"]'
    entrypoint = [a for ins, a in instructions if ins == "ENTRYPOINT"][-1]
    assert "survey-classifier-entrypoint" in entrypoint
    assert "EXPOSE 9108 9109" in [f"{i} {a}" for i, a in instructions]  # metrics, health


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_env_names_set_in_images_are_read_by_the_code(kind):
    known = settings_env_names() | literal_env_names() | entrypoint_env_names()
    names = set()
    for ins, args in _instructions(DOCKERFILES[kind]):
        if ins == "ENV":
            names.update(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", args))
    ours = {n for n in names if n.startswith(("SC_", "KAFKA_", "REDIS_", "SCHEMA_", "SURVEY_"))}
    assert ours and ours <= known, sorted(ours - known)


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_copied_sources_exist_and_dockerignore_admits_them(kind):
    ignore = (DOCKER / f"Dockerfile.{kind}.dockerignore").read_text().splitlines()
    assert ignore[[line.strip() for line in ignore].index("**")] == "**", "context should start from nothing"
    for ins, args in _instructions(DOCKERFILES[kind]):
        if ins == "COPY" and "--from" not in args:
            sources = [s for s in args.split() if not s.startswith("--")][:-1]
            for source in sources:
                if "*" in source:
                    continue
                assert (REPO / source).exists(), source
                assert any(line.startswith(f"!{source}") for line in ignore), f"{source} is excluded by the .dockerignore"


def test_entrypoint_is_valid_sh_and_execs_the_cli():
    script = DOCKER / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "SURVEY_CLASSIFIER_BUILD_ENGINES": "1"}
    # Not "run", so no engine build: the real CLI answers --version through the entrypoint.
    done = subprocess.run(["sh", str(script), "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "survey-classifier" in done.stdout


def test_entrypoint_engine_build_flags_are_accepted_by_the_engines_command():
    """The build line parses with the real `engines` subcommand and uses the service's cache dir."""
    import argparse
    import importlib
    import shlex

    text = (DOCKER / "entrypoint.sh").read_text().replace("\\\n", " ")
    (line,) = [text_line for text_line in text.splitlines() if "survey-classifier engines build" in text_line]
    words = shlex.split(line.strip())[2:]  # after "survey-classifier engines"
    resolved = [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", w) for w in words]
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module("stream.commands.engines").register(sub)
    args = sub.choices["engines"].parse_args(resolved)
    assert args.action == "build" and args.backend == "tensorrt" and args.models == "all"
    image_env = " ".join(a for ins, a in _instructions(DOCKERFILES["gpu"]) if ins == "ENV")
    cache_dir = re.search(r"SC__ENGINE__CACHE_DIR=(\S+)", image_env).group(1)
    assert args.cache_dir == cache_dir
    assert "${SC__ENGINE__CACHE_DIR" in line


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_images_hold_no_research_code(kind):
    """research/ (studies, reports, pools) is not product: no COPY names it and the ignore list keeps it out."""
    ignore = [line.strip() for line in (DOCKER / f"Dockerfile.{kind}.dockerignore").read_text().splitlines()]
    assert not any(line.startswith(("!research", "!tests")) for line in ignore)
    assert "research/**" in ignore
    for ins, args in _instructions(DOCKERFILES[kind]):
        if ins in ("COPY", "ADD"):
            sources = [s.removeprefix("./") for s in args.split() if not s.startswith("--")][:-1]
            assert not any(s in ("", ".") or s.startswith(("research", "tests")) for s in sources), args


def test_wheel_holds_no_research_code():
    import tomllib

    from setuptools import find_packages

    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(REPO), include=find["include"], exclude=find.get("exclude", ()))
    assert "engines.training" in packages and "stream" in packages
    assert not [p for p in packages if p.split(".")[0] in ("research", "tests")], packages
