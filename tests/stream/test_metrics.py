"""The metrics and health endpoints answer over HTTP."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest

from stream.metrics import Metrics, MetricsServer


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_endpoints_and_reconciliation():
    m = Metrics()
    server = MetricsServer(m, "127.0.0.1", 0).start()
    try:
        m.consumed.labels("alerts").inc(3)
        m.count("alerts", 0, "consumed", 3)
        m.count("alerts", 0, "published", 2)
        m.count("alerts", 0, "dead_lettered", 1)
        code, body = _get(server.port, "/metrics")
        assert code == 200 and b'sc_messages_consumed_total{topic="alerts"} 3.0' in body
        assert _get(server.port, "/healthz")[0] == 200
        assert _get(server.port, "/readyz")[0] == 503          # not assigned, Redis unknown
        m.assigned = True
        m.set_redis_up(True)
        assert _get(server.port, "/readyz")[0] == 200
        stats = json.loads(_get(server.port, "/stats")[1])
        assert stats["alerts/0"] == {"consumed": 3, "published": 2, "duplicates": 0, "dead_lettered": 1, "balanced": True}
        assert _get(server.port, "/nope")[0] == 404
    finally:
        server.close()


@pytest.mark.parametrize("published,balanced", [(2, True), (1, False)])
def test_partition_counts_balance(published, balanced):
    m = Metrics()
    m.count("t", 1, "consumed", 2)
    m.count("t", 1, "published", published)
    assert m.totals().balanced is balanced


def test_half_open_connections_neither_multiply_threads_nor_block_health_for_long():
    import socket
    import threading
    import time

    m = Metrics()
    server = MetricsServer(m, "127.0.0.1", 0, workers=4, backlog=4, request_timeout_s=0.5).start()
    sockets: list[socket.socket] = []
    try:
        before = threading.active_count()
        for _ in range(300):  # connect, send nothing (non-blocking: the kernel's accept queue fills too)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", server.port))
            sockets.append(s)
        peak = 0
        for _ in range(10):
            time.sleep(0.05)
            peak = max(peak, threading.active_count() - before)
        assert peak <= 4, "at most the pool's threads, not one per connection"
        deadline = time.monotonic() + 5
        while server.refused == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            peak = max(peak, threading.active_count() - before)
        assert server.refused > 0 and peak <= 4  # beyond pool + queue: closed at once, no new threads
        # the silent ones time out; health answers within (pool + queue) / pool * timeout
        t0 = time.monotonic()
        code = None
        while time.monotonic() - t0 < 5:
            try:
                code = _get(server.port, "/healthz")[0]
                break
            except OSError:  # refused while the queue was still full
                time.sleep(0.1)
        assert code == 200 and time.monotonic() - t0 < 3
        # a slowloris sending half a request line is cut off by the timeout too
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        slow.sendall(b"GET /metr")
        t0 = time.monotonic()
        assert slow.recv(100) == b""  # closed by the server
        assert time.monotonic() - t0 < 3
        slow.close()
    finally:
        for s in sockets:
            s.close()
        server.close()


def test_readiness_waits_for_the_schema_registry():
    m = Metrics()
    server = MetricsServer(m, "127.0.0.1", 0).start()
    try:
        m.assigned = True
        m.set_redis_up(True)
        m.set_schema_registry_up(False)
        code, body = _get(server.port, "/readyz")
        assert code == 503 and json.loads(body)["schema_registry_up"] is False
        m.set_schema_registry_up(True)
        assert _get(server.port, "/readyz")[0] == 200
        assert b"sc_schema_registry_up 1.0" in _get(server.port, "/metrics")[1]
    finally:
        server.close()


def test_every_timed_stage_is_a_documented_stage_and_the_redis_mark_has_its_own():
    """sc_stage_seconds' labels are STAGES: the service's timers and the scoring clock use no other,
    and the Redis mark is timed apart from the dedup lookup."""
    import re
    from pathlib import Path

    from stream.metrics import STAGES

    source = (Path(__file__).resolve().parents[2] / "stream" / "service.py").read_text()
    timed = set(re.findall(r'timer\.(?:time|add)\("([a-z_]+)"', source))
    assert timed | {"preprocess", "infer"} <= set(STAGES), sorted(timed - set(STAGES))
    assert {"dedup", "mark"} <= timed
    assert re.search(r'timer\.time\("mark", lambda: self\._redis\.mark\(', source)


def test_model_info_names_every_loaded_model_and_its_surveys():
    from engines.registry import load_registry

    registry = load_registry()
    runners = [registry.load_runner("realbogus", "torch"), registry.load_runner("braai", "torch", unvalidated_surveys=("rubin",))]
    metrics = Metrics()
    metrics.set_models(runners)
    text = generate_latest(metrics.registry).decode()
    card = registry.card("realbogus")
    assert (f'sc_model_info{{backend="torch",name="realbogus",sha256="{card.weights_sha256}",surveys="ztf",'
            f'version="{card.version}"}} 1.0') in text
    assert 'name="braai"' in text and 'surveys="ztf,rubin!"' in text
    for r in runners:
        r.close()


def test_records_name_the_host_and_the_process_so_two_members_on_one_host_differ():
    import os
    import socket

    from stream.service import Service

    host = Service.__dataclass_fields__["processing_host"].default_factory()   # type: ignore[misc]
    assert host == f"{socket.gethostname()}:{os.getpid()}"


def test_decode_counters_follow_the_decoders_running_totals():
    m = Metrics()

    def value(name):
        return m.registry.get_sample_value(name)

    m.sync_decode(restarts=2, slow_reads=5)
    m.sync_decode(restarts=2, slow_reads=7)
    assert value("sc_decode_worker_restarts_total") == 2 and value("sc_decode_history_slow_reads_total") == 7
    m.sync_decode(restarts=1, slow_reads=3)   # a total that went back (a new pool) never makes a counter go back
    assert value("sc_decode_worker_restarts_total") == 2 and value("sc_decode_history_slow_reads_total") == 7
