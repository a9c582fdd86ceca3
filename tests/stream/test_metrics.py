"""The metrics and health endpoints answer over HTTP."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

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
