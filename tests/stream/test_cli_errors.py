"""A person's mistakes end in one line naming what to change, exit status 2, and no traceback.

Each case runs the real command line in a subprocess (what a user sees), with a clean
environment so the host's KAFKA_BOOTSTRAP_SERVERS / SC__* variables cannot leak in.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SC__", "SC_KAFKA__", "KAFKA_", "REDIS_", "SCHEMA_"))}
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "stream.cli", *argv], capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})}, cwd=REPO)


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def toml(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "settings.toml"
        path.write_text(text)
        return str(path)
    return write


def test_no_broker_named_names_the_variable() -> None:
    _one_line_error(_cli("run"), "KAFKA_BOOTSTRAP_SERVERS", "--embedded")


def test_no_redis_named_names_the_variable() -> None:
    _one_line_error(_cli("run", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}), "REDIS_URL")


def test_config_file_missing_names_the_file(tmp_path) -> None:
    _one_line_error(_cli("run", "--config", str(tmp_path / "nope.toml")), "nope.toml", "not found")


def test_key_typo_in_file_names_the_file_and_suggests(toml) -> None:
    path = toml("[batch]\nmax_wiat_ms = 5\n")
    _one_line_error(_cli("run", "--config", path), path, "max_wiat_ms", "did you mean max_wait_ms?")


def test_section_typo_in_file_suggests(toml) -> None:
    path = toml("[bach]\nmax_size = 5\n")
    _one_line_error(_cli("run", "--config", path), path, "[bach]", "did you mean batch?")


def test_wrong_type_in_file_names_file_and_key(toml) -> None:
    path = toml('[batch]\nmax_size = "big"\n')
    _one_line_error(_cli("run", "--config", path), path, "batch.max_size", "integer")


def test_invalid_toml_names_the_file(toml) -> None:
    path = toml("[batch\n")
    _one_line_error(_cli("run", "--config", path), path, "TOML")


def test_environment_key_typo_is_reported_as_a_variable() -> None:
    _one_line_error(_cli("run", env={"SC__BATCH__MAX_WIAT_MS": "5"}),
                    "environment variable SC__BATCH__MAX_WIAT_MS", "did you mean SC__BATCH__MAX_WAIT_MS?")


def test_environment_section_typo_is_reported_as_a_variable() -> None:
    _one_line_error(_cli("run", env={"SC__BACH__MAX_SIZE": "5"}), "SC__BACH__MAX_SIZE", "did you mean SC__BATCH__MAX_SIZE?")


def test_environment_wrong_type_names_the_variable() -> None:
    _one_line_error(_cli("run", env={"SC__BATCH__MAX_SIZE": "many"}), "environment variable SC__BATCH__MAX_SIZE", "integer")


def test_metrics_port_in_use_names_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = _cli("run", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0",
                                "SC__OBSERVABILITY__METRICS_PORT": str(port)})
    _one_line_error(proc, f"127.0.0.1:{port}", "already in use", "SC__OBSERVABILITY__METRICS_PORT")


def test_health_port_in_use_names_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = _cli("run", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0",
                                "SC__OBSERVABILITY__METRICS_PORT": "0", "SC__OBSERVABILITY__HEALTH_PORT": str(port)})
    _one_line_error(proc, f"health port 127.0.0.1:{port}", "already in use", "SC__OBSERVABILITY__HEALTH_PORT",
                    "serve /healthz and /readyz on the metrics port")


def test_bad_argument_is_argparse_status_2() -> None:
    proc = _cli("replay", "x", "--rate", "fast")
    _one_line_error(proc, "--rate")


def test_unknown_model_in_engines_build_suggests(tmp_path) -> None:
    proc = _cli("engines", "build", "--models", "realbogsu", "--cache-dir", str(tmp_path))
    _one_line_error(proc, "realbogsu", "did you mean realbogus?", "known:")


def test_replay_to_a_dead_broker_is_one_line_in_bounded_time() -> None:
    proc = _cli("replay", "schemas/samples/ztf", "--bootstrap-servers", f"127.0.0.1:{_free_port()}",
                "--connect-timeout", "1", "--no-progress", timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "did not answer" in line]
    assert len(lines) == 1 and "KAFKA_BOOTSTRAP_SERVERS" in lines[0]
    assert "librdkafka" not in proc.stderr and "%3|" not in proc.stderr  # no raw librdkafka lines


def test_debug_shows_the_traceback(toml) -> None:
    path = toml("[batch]\nmax_wiat_ms = 5\n")
    proc = _cli("--log-level", "debug", "run", "--config", path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "did you mean max_wait_ms?" in proc.stderr


def test_subscribe_to_a_dead_broker_is_one_line_in_bounded_time() -> None:
    proc = _cli("subscribe", "--bootstrap-servers", f"127.0.0.1:{_free_port()}", "--connect-timeout", "1", "--until-end",
                timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [line for line in proc.stderr.strip().splitlines() if "did not answer" in line]


def test_unknown_model_in_engine_models_suggests() -> None:
    proc = _cli("run", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0",
                            "SC__ENGINE__MODELS": "realbogsu", "SC__OBSERVABILITY__METRICS_PORT": "0",
                            "SC__OBSERVABILITY__HEALTH_PORT": "0"})
    _one_line_error(proc, "SC__ENGINE__MODELS", "did you mean realbogus?")


def test_engine_models_takes_name_at_version_from_toml_and_blames_the_file(tmp_path) -> None:
    from stream.commands.run import _check_models
    from stream.config import load_settings

    config = tmp_path / "old.toml"
    config.write_text('[engine]\nmodels = ["realbogus@2.0.0-pool-distilled"]\n')
    _check_models(load_settings(config, env={}), str(config))   # an older version the registry ships: accepted
    config.write_text('[engine]\nmodels = ["realbogus@9.9"]\n')
    proc = _cli("run", "--config", str(config), env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0",
                                                      "SC__OBSERVABILITY__METRICS_PORT": "0",
                                                      "SC__OBSERVABILITY__HEALTH_PORT": "0"})
    _one_line_error(proc, f"engine.models in {config}", "version '9.9'")
    assert "SC__ENGINE__MODELS" not in proc.stderr


@pytest.mark.parametrize("argv,needle", [
    (["replay", "schemas/samples/ztf", "--bootstrap-servers", ""], "no Kafka named"),
    (["replay", "schemas/samples/ztf", "--bootstrap-servers", "127.0.0.1:1", "--skip", "-1"], "--skip and --limit"),
    (["inspect", "no/such/file.avro"], "no/such/file.avro: no such file or directory"),
    (["stamps", "no/such/file.avro", "--label-score", "drb", "--out", "var/never-written"], "no such file or directory: no/such/file.avro"),
    (["evaluate", "iicnet"], "give --data PATH or --synthetic N"),
    (["train", "hrcelestialnet", "--binning", "3", "--synthetic", "4"], "--binning must be 1, 2 or 4"),
])
def test_a_users_mistake_is_a_usage_error_in_every_command(argv, needle, capsys, monkeypatch):
    """Every command reports a person's mistake the same way: one line, the command named, status 2."""
    from stream.cli import main

    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"survey-classifier {argv[0]}: error: ") and needle in err[-1], err
