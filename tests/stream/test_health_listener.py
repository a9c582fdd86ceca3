"""Health on its own listener (issue #23): "16 slow connections left 0 of 20 health probes
answered ... any pod can get the classifier restarted by its liveness probe".

The listeners as ``build_service`` wires them: the metrics listener (8 workers, 8 queued, 2 s
deadline) and the health listener (2 workers, 4 queued, 1 s deadline). While slow clients keep
every metrics worker and queue slot taken, reconnecting as soon as they are cut, probes to the
metrics port fail (what the shared listener did to /healthz) and probes to the health port are
all answered within a bound. Slow clients on the health port itself
are refused beyond its queue and cut at its deadline, so the probes come back within
``(2 + 4) / 2 * 1`` = 3 s.
"""
from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from stream.metrics import HealthServer, Metrics

#: Slow clients per attack: more than a listener's workers + queue (16 on the metrics port).
ATTACKERS = 24
#: Longest a probe may take to be answered while the metrics port is flooded (kubelet waits 5 s).
PROBE_BOUND_S = 1.0


def _hold(port: int, stop: threading.Event, reconnect: bool) -> None:
    """A slowloris: a request line a byte at a time, each byte within the per-read timeout; once
    cut, again at once while ``reconnect`` (bounded by ``stop``)."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n" * 100:
                    if stop.is_set():
                        return
                    sock.sendall(bytes([byte]))
                    time.sleep(0.2)
        except OSError:
            pass  # refused, or cut off at the deadline
        if not reconnect:
            return
        time.sleep(0.01)


def _probe(port: int, path: str) -> tuple[int | None, float]:
    """(status or None when refused / timed out, seconds taken)."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, time.monotonic() - t0
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - t0
    except OSError:
        return None, time.monotonic() - t0


def _attack(port: int, stop: threading.Event, reconnect: bool) -> list[threading.Thread]:
    threads = [threading.Thread(target=_hold, args=(port, stop, reconnect), daemon=True) for _ in range(ATTACKERS)]
    for t in threads:
        t.start()
    return threads


def test_probes_on_the_health_port_are_answered_while_the_metrics_port_is_flooded():
    """The listeners as build_service wires them from the settings (a dead broker and Redis:
    nothing here needs either)."""
    from stream.config import load_settings
    from stream.service import build_service
    from stream.stack import free_ports

    metrics_port, health_port = free_ports(2)
    service = build_service(load_settings(env=_service_env(metrics_port=str(metrics_port), health_port=str(health_port))),
                            runners={})
    assert service.metrics_server is not None and service.health_server is not None
    metrics_server, health_server = service.metrics_server, service.health_server
    service.metrics.assigned = True
    service.metrics.set_redis_up(True)
    stop = threading.Event()
    attackers = _attack(metrics_server.port, stop, reconnect=True)
    try:
        time.sleep(0.5)  # every metrics worker and queue slot held
        on_metrics, on_health = [], []
        for _ in range(20):
            on_metrics.append(_probe(metrics_server.port, "/healthz"))
            on_health.append(_probe(health_server.port, "/healthz"))
            on_health.append(_probe(health_server.port, "/readyz"))
            time.sleep(0.1)
        answered_metrics = sum(code == 200 for code, _ in on_metrics)
        slowest = max(seconds for _, seconds in on_health)
        print(f"\n{ATTACKERS} slow clients on the metrics port: /healthz there answered {answered_metrics} of 20; "
              f"on the health port {sum(code == 200 for code, _ in on_health)} of 40, slowest {slowest * 1000:.0f} ms; "
              f"metrics port refused {metrics_server.refused} connections")
        # the flood is real: on the metrics port (the old shared listener) the probes mostly fail
        assert metrics_server.refused > 0 and answered_metrics <= 10
        # and the health listener does not notice it
        assert all(code == 200 for code, _ in on_health), on_health
        assert slowest < PROBE_BOUND_S
        assert _probe(health_server.port, "/metrics")[0] == 404  # the health listener serves the probes alone
    finally:
        stop.set()
        for t in attackers:
            t.join(timeout=10)
        service.close()


def test_slow_clients_on_the_health_port_are_refused_or_cut_at_its_deadline():
    metrics = Metrics()
    health_server = HealthServer(metrics, "127.0.0.1", 0).start()
    stop = threading.Event()
    attackers = _attack(health_server.port, stop, reconnect=False)
    try:
        time.sleep(0.3)
        held = [t for t in attackers if t.is_alive()]
        refused_at_once = health_server.refused
        assert refused_at_once >= ATTACKERS - 6, "beyond 2 workers + 4 queued: closed at once"
        t0 = time.monotonic()
        code = None
        while time.monotonic() - t0 < 6 and code != 200:
            code, _ = _probe(health_server.port, "/healthz")
            if code != 200:
                time.sleep(0.1)
        recovered = time.monotonic() - t0
        print(f"\n{ATTACKERS} slow clients on the health port: {refused_at_once} refused at once, "
              f"{len(held)} held; /healthz answered again after {recovered:.2f} s")
        # (2 + 4) / 2 * 1 s in theory; slack for a loaded machine, still inside kubelet's 5 s probe timeout
        assert code == 200 and recovered < 4.5, "held ones cut by the 1 s deadline"
        for t in attackers:
            t.join(timeout=5)
        assert not any(t.is_alive() for t in attackers), "every slow client was cut"
    finally:
        stop.set()
        health_server.close()


def _service_env(**ports: str) -> dict[str, str]:
    # a dead broker and Redis: build_service wires the listeners without reaching either
    return {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0",
            **{f"SC__OBSERVABILITY__{k.upper()}": v for k, v in ports.items()}}


def test_the_service_serves_health_on_the_configured_health_port():
    from stream.config import load_settings
    from stream.service import build_service
    from stream.stack import free_ports

    metrics_port, health_port = free_ports(2)
    service = build_service(load_settings(env=_service_env(metrics_port=str(metrics_port), health_port=str(health_port))),
                            runners={})
    try:
        assert service.metrics_server is not None and service.health_server is not None
        assert (service.metrics_server.port, service.health_server.port) == (metrics_port, health_port)
        assert _probe(health_port, "/healthz")[0] == 200 and _probe(health_port, "/readyz")[0] == 503  # nothing assigned
        assert _probe(health_port, "/metrics")[0] == 404 and _probe(health_port, "/stats")[0] == 404
        assert _probe(metrics_port, "/metrics")[0] == 200
    finally:
        service.close()
    # health_port = 0: no second listener, the probes answer on the metrics port as before
    service = build_service(load_settings(env=_service_env(metrics_port=str(metrics_port), health_port="0")), runners={})
    try:
        assert service.health_server is None and _probe(metrics_port, "/healthz")[0] == 200
    finally:
        service.close()


def test_one_port_for_both_listeners_is_refused_naming_the_settings():
    from stream.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="health_port = 0"):
        load_settings(env=_service_env(metrics_port="9108", health_port="9108")).validate()
    assert load_settings(env={}).observability.health_port == 9109  # the documented default
