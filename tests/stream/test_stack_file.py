"""#26 case 11: `stack up` and the shipped embedded config agree, in one step.

`stack up` (a real process: Tansu + redis-server) writes var/stack.env in its directory; replay,
subscribe, status and `run --config deploy/config/embedded.toml` started there with
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL unset find it. `run` refuses a missing output topic unless
--create-topics (it used to be auto-created by the first produce).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.cli import main
from stream.stack import read_stack_file, write_stack_file
from tests.conftest import REPO, SAMPLES

pytestmark = pytest.mark.integration


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SC__", "SC_KAFKA__", "KAFKA_", "REDIS_"))}


@pytest.fixture
def stack_up(tmp_path):
    """Start `survey-classifier stack up [ARGS]` in tmp_path (running until the test ends); returns (process, var/stack.env)."""
    procs: list[subprocess.Popen] = []

    def start(*extra: str) -> tuple[subprocess.Popen, Path]:
        env = {**_clean_env(), "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "stack", "up", *extra], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        address_file = tmp_path / "var" / "stack.env"
        deadline = time.monotonic() + 90
        while not address_file.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "stack up wrote no var/stack.env in 90 s"
            time.sleep(0.2)
        return proc, address_file

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _forget_env(monkeypatch) -> None:
    for name in [k for k in os.environ if k.startswith(("SC__", "SC_KAFKA__", "KAFKA_", "REDIS_"))]:
        monkeypatch.delenv(name)


def test_commands_started_beside_stack_up_find_it_and_run_refuses_a_missing_output_topic(stack_up, tmp_path, monkeypatch,
                                                                                          capsys):
    proc, address_file = stack_up("--topics", "alerts", "--partitions", "2")
    _forget_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    found = read_stack_file(Path("var/stack.env"))
    assert found is not None and found["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")

    assert main(["replay", str(SAMPLES / "ztf" / "alerce"), "--topic", "alerts", "--no-progress"]) == 0
    sent = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sent"]
    assert sent > 0
    assert main(["subscribe", "--list-topics"]) == 0
    assert "alerts" in capsys.readouterr().out
    assert main(["status", "--topics", "alerts", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert sum(p["end"] for p in status["partitions"]) == sent

    # the shipped embedded config, nothing exported: it reaches the stack, and refuses the missing outputs
    monkeypatch.setenv("SC__OBSERVABILITY__METRICS_PORT", "0")
    monkeypatch.setenv("SC__OBSERVABILITY__HEALTH_PORT", "0")
    assert main(["run", "--config", str(REPO / "deploy" / "config" / "embedded.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"survey-classifier run: error: output topic(s) missing on {found['KAFKA_BOOTSTRAP_SERVERS']}: "
                          f"classified (kafka.output_topic), classified-dead-letter (kafka.dead_letter_topic)"), err
    assert "--create-topics" in err
    assert main(["subscribe", "--list-topics"]) == 0
    assert "classified" not in capsys.readouterr().out  # refused, not auto-created

    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert not address_file.exists()  # removed when the stack stops


def test_stack_up_then_run_with_the_shipped_embedded_config_classifies_a_night(stack_up, tmp_path, monkeypatch, capsys):
    """The issue's exact steps: `stack up &`, then replay, `run --config deploy/config/embedded.toml`
    and subscribe, nothing exported (realbogus alone, to keep it short)."""
    stack_up()
    _forget_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["replay", str(SAMPLES / "ztf" / "alerce"), "--topic", "alerts", "--no-progress"]) == 0
    sent = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sent"]
    env = {**_clean_env(), "PYTHONPATH": str(REPO), "SC__ENGINE__MODELS": "realbogus",
           "SC__ENGINE__CACHE_DIR": str(REPO / "var" / "engines"), "SC__OBSERVABILITY__METRICS_PORT": "0",
           "SC__OBSERVABILITY__HEALTH_PORT": "0"}
    run = subprocess.run([sys.executable, "-m", "stream.cli", "--log-format", "json", "run", "--config",
                          str(REPO / "deploy" / "config" / "embedded.toml"), "--max-idle", "5"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert '"event": "using_stack_file"' in run.stderr
    assert main(["subscribe", "--topic", "classified", "--until-end", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["kept"] == sent and summary["lag"] == 0


def test_a_stale_stack_file_is_ignored(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    path = write_stack_file("127.0.0.1:1", "redis://127.0.0.1:2/0", tmp_path / "stack.env")
    assert read_stack_file(path) is not None                 # this process is alive
    path.write_text(path.read_text().replace(f"STACK_PID={os.getpid()}", f"STACK_PID={dead.stdout.strip()}"))
    assert read_stack_file(path) is None                     # its stack up is gone: not used
