"""A dead broker is visible: readiness false, ``sc_kafka_up`` 0, one warning per interval, and an
exit after the configured time; librdkafka's own lines arrive rate limited through structlog.

The dead broker is a free local port nothing listens on (a real refused connection).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from stream.health import ServiceWatch, probe_broker, probe_redis
from stream.kafka_logs import RateLimitedHandler
from stream.metrics import Metrics, MetricsServer

REPO = Path(__file__).resolve().parents[2]


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_probes_report_a_dead_broker_and_redis_in_bounded_time() -> None:
    dead = _dead_address()
    started = time.monotonic()
    assert "transport" in (probe_broker({"bootstrap.servers": dead}, timeout_s=1.0) or "").lower()
    assert probe_redis(f"redis://{dead}/0", timeout_s=1.0) is not None
    assert time.monotonic() - started < 5


def test_dead_broker_readiness_gauge_warnings_and_exit() -> None:
    dead = _dead_address()
    metrics = Metrics()
    metrics.assigned = True
    metrics.set_redis_up(True)
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    gave_up: list[float] = []
    watch = ServiceWatch({"bootstrap.servers": dead}, None, metrics, warn_interval_s=1.0, exit_after_s=3.0,
                         initial_retry_s=0.2, on_give_up=lambda: gave_up.append(time.monotonic()))
    try:
        with capture_logs() as logs:
            started = time.monotonic()
            watch.start()
            deadline = started + 15
            while not gave_up and time.monotonic() < deadline:
                time.sleep(0.1)
                if metrics.kafka_up is False:
                    status, body = _get(server.port, "/readyz")
                    assert status == 503 and json.loads(body)["kafka_up"] is False
            assert gave_up, "the watch never gave up"
            elapsed = gave_up[0] - started
        status, text = _get(server.port, "/metrics")
        assert "sc_kafka_up 0.0" in text
        assert _get(server.port, "/healthz")[0] == 200  # the process is alive and says so honestly
    finally:
        watch.stop()
        server.close()
    assert 3.0 <= elapsed < 6.0, elapsed
    warnings = [e for e in logs if e["event"] == "kafka_unreachable"]
    # probes back off from 0.2 s, yet at most one warning per 1 s interval over ~3 s
    assert 2 <= len(warnings) <= 4, warnings
    assert any(e["event"] == "kafka_unreachable_giving_up" for e in logs)
    assert watch.gave_up and "kafka.exit_after_unreachable_s" in watch.give_up_reason


def test_recovery_is_one_line_and_gauge_back_to_one() -> None:
    metrics = Metrics()
    watch = ServiceWatch({"bootstrap.servers": "unused"}, None, metrics, warn_interval_s=60)
    with capture_logs() as logs:
        watch.record("kafka", "down", "b:9092")
        watch.record("kafka", "down", "b:9092")
        watch.record("kafka", None, "b:9092")
    assert [e["event"] for e in logs] == ["kafka_unreachable", "kafka_reachable_again"]
    assert metrics.kafka_up is True


def test_librdkafka_lines_are_rate_limited_per_facility() -> None:
    handler = RateLimitedHandler(interval_s=0.3)
    logger = logging.Logger("test-librdkafka")
    logger.addHandler(handler)
    with capture_logs() as logs:
        for _ in range(50):
            logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect failed: Connection refused")
        time.sleep(0.35)
        logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect failed: Connection refused")
    assert len(logs) == 2 and logs[0]["event"] == "librdkafka_log" and logs[0]["facility"] == "FAIL"
    assert logs[1]["suppressed"] == 49


def test_run_against_a_dead_broker_exits_2_after_the_configured_time(tmp_path) -> None:
    dead = _dead_address()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SC__", "SC_KAFKA__", "KAFKA_", "REDIS_"))}
    env.update({"PYTHONPATH": str(REPO), "KAFKA_BOOTSTRAP_SERVERS": dead, "REDIS_URL": f"redis://{dead}/0",
                "SC__KAFKA__EXIT_AFTER_UNREACHABLE_S": "2", "SC__KAFKA__UNREACHABLE_WARN_INTERVAL_S": "1",
                "SC__OBSERVABILITY__METRICS_PORT": "0", "SC__OBSERVABILITY__HEALTH_PORT": "0",
                "SC__ENGINE__MODELS": "realbogus",
                "SC__ENGINE__CACHE_DIR": str(REPO / "var" / "engines")})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "--log-format", "json", "run", "--allow-untrained"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 90
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "kafka_unreachable" in names and "redis_unreachable" in names and "kafka_unreachable_giving_up" in names
    assert proc.stderr.strip().splitlines()[-1].startswith("survey-classifier run: error: Kafka at ")
    assert not [line for line in proc.stderr.splitlines() if line.startswith("%")]  # no raw librdkafka lines


@pytest.mark.integration
def test_a_frozen_broker_shows_within_the_probe_interval_not_the_warning_interval(services) -> None:
    """The chaos suite's finding: while both answered, the watch slept ``warn_interval_s`` (30 s)
    between probes, so a broker frozen for 20 s never showed in ``sc_kafka_up`` or ``/readyz``.
    Now it asks every ``probe_interval_s``: a SIGSTOPped Tansu reads 0 within that plus the probe
    timeout, and 1 again as soon as it answers (the backoff while down no longer grows past it)."""
    if services.embedded is None:
        pytest.skip("needs the embedded broker to freeze it")
    from stream.config import load_settings
    from stream.kafka_clients import consumer_config

    conf = consumer_config(load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers}).kafka)
    metrics = Metrics()
    watch = ServiceWatch(conf, services.redis_url, metrics, warn_interval_s=30.0, probe_interval_s=0.5, probe_timeout_s=1.0)
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while metrics.kafka_up is not True and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metrics.kafka_up is True and metrics.redis_up
        services.embedded.pause_service("tansu")
        try:
            frozen = time.monotonic()
            while metrics.kafka_up is not False and time.monotonic() < frozen + 10:
                time.sleep(0.1)
            assert metrics.kafka_up is False, "the frozen broker never showed"
            assert time.monotonic() - frozen < 0.5 + 1.0 + 2.0, "shown within the probe interval plus the probe timeout"
            time.sleep(max(0.0, frozen + 12 - time.monotonic()))   # long enough for the backoff to pass 4 s
        finally:
            services.embedded.resume_service("tansu")
        resumed = time.monotonic()
        while metrics.kafka_up is not True and time.monotonic() < resumed + 20:
            time.sleep(0.1)
        assert metrics.kafka_up is True, "the broker answered again and the gauge never came back"
        # the backoff while down is capped at the probe interval: "back" shows as soon as "down" did
        assert time.monotonic() - resumed < 0.5 + 1.0 + 2.0
    finally:
        watch.stop()
