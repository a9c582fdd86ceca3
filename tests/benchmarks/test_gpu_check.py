"""The GPU check resolves every step without a GPU (its dry run), and a broken step fails it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _dry_run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(tmp_path / "out"), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_dry_run_resolves_every_step(tmp_path):
    done = _dry_run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["failures"] == []
    assert summary["steps"] == ["registry", "models", "bundled_inputs", "preprocess_cpu", "tensorrt_api",
                                "service_args", "results_folder"]


def test_dry_run_fails_on_a_step_that_cannot_resolve(tmp_path):
    done = _dry_run(tmp_path, "--models", "no-such-model")
    assert done.returncode != 0
    assert "models" in json.loads(done.stdout.strip().splitlines()[-1])["failures"]
