"""Prometheus metrics, reconciliation counts and the health endpoints of the service.

``/metrics`` (Prometheus text), ``/healthz`` (liveness: the main loop turned recently),
``/readyz`` (readiness: partitions assigned, Redis reachable and the broker not known to be
down) and ``/stats`` (JSON: the per-partition reconciliation
``consumed = published + duplicates + dead_lettered``).

Two listeners (#23): :class:`MetricsServer` serves all four; :class:`HealthServer`, on its own
port with its own small pool and deadline, serves ``/healthz`` and ``/readyz`` alone, so
connections held open or a flood on the metrics port cannot starve the probes that restart or
unready a member.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Self

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "PartitionCounts", "MetricsServer", "HealthServer", "BoundedHTTPServer", "STAGES", "LATENCY_BUCKETS",
           "LATENCY_OBJECTIVE_S", "ALL_PATHS", "HEALTH_PATHS"]

#: The latency objective (Rubin: 98% of a visit's alerts public within 60 s). A bucket bound sits
#: exactly on it, so "p98 over 60 s" (deploy/prometheus/latency-slo.yml) is decided without
#: interpolation error: histogram_quantile(0.98) > 60 exactly when the le="60.0" bucket holds < 98%.
LATENCY_OBJECTIVE_S = 60
#: Seconds; fine from 10 ms up, and every 10-30 s between 20 and 120 s so p98 near the objective
#: interpolates within 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 40, 50,
                                      LATENCY_OBJECTIVE_S, 70, 80, 90, 120, 180, 300, 600)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

#: The ``stage`` label of ``sc_stage_seconds``, in batch order: ``dedup`` is the Redis lookup of
#: the batch's keys, ``mark`` the Redis mark of what was published (after every delivery report).
STAGES: tuple[str, ...] = ("decode", "dedup", "preprocess", "infer", "publish", "mark", "commit")

#: What the metrics listener serves, and what the health listener serves (the probes' two).
ALL_PATHS: tuple[str, ...] = ("/metrics", "/healthz", "/readyz", "/stats")
HEALTH_PATHS: tuple[str, ...] = ("/healthz", "/readyz")


@dataclass
class PartitionCounts:
    consumed: int = 0
    published: int = 0
    duplicates: int = 0
    dead_lettered: int = 0

    @property
    def balanced(self) -> bool:
        return self.consumed == self.published + self.duplicates + self.dead_lettered


@dataclass
class Metrics:
    """All counters of one service instance (its own registry: tests can run several)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    partitions: dict[tuple[str, int], PartitionCounts] = field(default_factory=lambda: defaultdict(PartitionCounts))
    assigned: bool = False
    redis_up: bool = False
    #: None until a broker probe ran (stream.health.ServiceWatch); False while the broker is unreachable.
    kafka_up: bool | None = None
    #: False while a configured schema registry cannot answer (consuming is paused meanwhile).
    schema_registry_up: bool = True
    last_loop_monotonic: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter("sc_messages_consumed", "Input messages consumed", ["topic"], registry=r)
        self.published = Counter("sc_records_published", "Classified records acknowledged by the broker", ["topic"], registry=r)
        self.duplicates = Counter("sc_duplicates", "Inputs already published (redelivery, replay, upstream duplicate)", ["topic"], registry=r)
        self.dead_letters = Counter("sc_dead_letters", "Messages sent to the dead-letter topic", ["reason"], registry=r)
        self.batch_size = Histogram("sc_batch_size", "Messages per micro-batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)
        self.stage_seconds = Histogram("sc_stage_seconds", "Time per batch in each stage: " + ", ".join(STAGES), ["stage"],
                                       buckets=_STAGE_BUCKETS, registry=r)
        self.latency = Histogram("sc_end_to_end_latency_seconds", "Input message timestamp to output acknowledged",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("sc_consumer_lag", "High watermark minus position", ["topic", "partition"], registry=r)
        self.redis_up_gauge = Gauge("sc_redis_up", "1 when the last Redis call succeeded", registry=r)
        self.kafka_up_gauge = Gauge("sc_kafka_up", "1 when the last broker metadata request succeeded", registry=r)
        self.schema_registry_up_gauge = Gauge("sc_schema_registry_up", "0 while the schema registry cannot answer (consuming paused)", registry=r)
        self.schema_registry_up_gauge.set(1)
        self.in_flight = Gauge("sc_in_flight_batches", "Batches consumed but not yet committed", registry=r)
        self.decode_worker_restarts = Counter(
            "sc_decode_worker_restarts", "Decode workers retired and started anew (a message broke a decode limit, or a worker died)",
            registry=r)
        self.history_slow_reads = Counter(
            "sc_decode_history_slow_reads", "Records whose history arrays were decoded in full because no skipper could "
            "skip them (a climbing count: the survey's schema changed under the skippers, and decoding costs several times more)",
            registry=r)
        self.model_scores = Counter(
            "sc_model_scores", "Published inputs each model scored, by survey: against sc_records_published, what share a "
            "model covers (one that does not apply to an input gives it no score: ACAI without its 25 features, alertclass "
            "without the packet's reference-image source)", ["model", "survey"], registry=r)
        self._decode_seen = (0, 0)
        self.model_info = Gauge("sc_model_info", "1 per model this member runs: name, version, weights sha256, backend, "
                                "and the surveys it scores (validated; unvalidated ones marked '!')",
                                ["name", "version", "sha256", "backend", "surveys"], registry=r)

    def set_models(self, runners: Iterable[Any]) -> None:
        """One ``sc_model_info`` series per loaded model (what the member's records will name)."""
        for runner in runners:
            p = runner.provenance
            surveys = ",".join([*(p.surveys or ()), *(f"{s}!" for s in getattr(runner, "unvalidated_surveys", ()))])
            self.model_info.labels(name=p.name, version=p.version, sha256=p.weights_sha256, backend=p.backend,
                                   surveys=surveys).set(1)

    def sync_decode(self, restarts: int, slow_reads: int) -> None:
        """Advance the decode counters to the decoders' running totals (restarts, slow history reads)."""
        seen_restarts, seen_slow = self._decode_seen
        self.decode_worker_restarts.inc(max(0, restarts - seen_restarts))
        self.history_slow_reads.inc(max(0, slow_reads - seen_slow))
        self._decode_seen = (max(restarts, seen_restarts), max(slow_reads, seen_slow))

    # -- reconciliation -------------------------------------------------------------------------
    def count(self, topic: str, partition: int, what: str, n: int = 1) -> None:
        with self._lock:
            counts = self.partitions[(topic, partition)]
            setattr(counts, what, getattr(counts, what) + n)

    def set_redis_up(self, up: bool) -> None:
        self.redis_up = up
        self.redis_up_gauge.set(1 if up else 0)

    def set_kafka_up(self, up: bool) -> None:
        self.kafka_up = up
        self.kafka_up_gauge.set(1 if up else 0)
    def set_schema_registry_up(self, up: bool) -> None:
        self.schema_registry_up = up
        self.schema_registry_up_gauge.set(1 if up else 0)

    def reconciliation(self) -> dict[str, dict[str, int | bool]]:
        with self._lock:
            return {
                f"{t}/{p}": {**vars(c), "balanced": c.balanced} for (t, p), c in sorted(self.partitions.items())
            }

    def totals(self) -> PartitionCounts:
        with self._lock:
            total = PartitionCounts()
            for c in self.partitions.values():
                for name in vars(total):
                    setattr(total, name, getattr(total, name) + getattr(c, name))
            return total


class _Deadlines:
    """One thread that shuts each registered socket down when its deadline passes."""

    def __init__(self, name: str = "metrics-http") -> None:
        self._due: dict[int, tuple[float, socket.socket]] = {}
        self._cond = threading.Condition()
        self._next = 0
        self._closed = False
        threading.Thread(target=self._watch, name=f"{name}-deadlines", daemon=True).start()

    def add(self, sock: socket.socket, seconds: float) -> int:
        with self._cond:
            self._next += 1
            self._due[self._next] = (time.monotonic() + seconds, sock)
            self._cond.notify()
            return self._next

    def remove(self, token: int) -> None:
        with self._cond:
            self._due.pop(token, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for token, (due, sock) in list(self._due.items()):
                    if due <= now:
                        del self._due[token]
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                wait = min((due for due, _ in self._due.values()), default=now + 60.0) - now
                self._cond.wait(max(0.01, wait))


class BoundedHTTPServer(HTTPServer):
    """An HTTP server with a fixed pool of handler threads and a bounded queue.

    ``ThreadingHTTPServer`` starts a thread per connection: 300 connections that never send a
    request hold 300 threads. Here ``workers`` threads serve, ``backlog`` more connections wait,
    and any beyond that are closed at once; the handler's socket timeout ends a silent connection
    after ``request_timeout_s``. So a flood costs at most ``workers`` threads and clears within
    ``(workers + backlog) / workers * request_timeout_s``.
    """

    daemon_threads = True
    #: the kernel's accept queue: connections are taken off it fast (and shed when the pool is full)
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, workers: int = 8,
                 backlog: int = 8, request_deadline_s: float | None = None, name: str = "metrics-http") -> None:
        super().__init__(address, handler)
        #: Whole-request deadline: the socket timeout bounds each read alone, so a client sending a
        #: byte at a time held a worker indefinitely (16 of them starved /healthz). Past it the
        #: connection is shut down, whatever it is doing.
        self.request_deadline_s = request_deadline_s
        self._deadlines = _Deadlines(name) if request_deadline_s is not None else None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers + backlog)
        #: Connections closed unserved because the pool and its queue were full.
        self.refused = 0

    # The override is narrower on purpose: a TCP server's requests are sockets, never the
    # (bytes, socket) pairs of a UDP server that socketserver's signature also allows.
    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve_one, request, client_address)

    def _serve_one(self, request: socket.socket, client_address: object) -> None:
        deadlines, deadline_s = self._deadlines, self.request_deadline_s
        token = deadlines.add(request, deadline_s) if deadlines is not None and deadline_s is not None else None
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a broken client connection must not end the worker
            pass
        finally:
            if deadlines is not None and token is not None:
                deadlines.remove(token)
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        if self._deadlines is not None:
            self._deadlines.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class MetricsServer:
    """A small HTTP server for the endpoints above: a bounded thread pool, request timeouts."""

    #: what this listener answers (others: 404) and the name of its threads
    paths: tuple[str, ...] = ALL_PATHS
    name = "metrics-http"

    def __init__(self, metrics: Metrics, host: str, port: int, liveness_timeout_s: float = 120.0, *,
                 workers: int = 8, backlog: int = 8, request_timeout_s: float = 2.0) -> None:
        handler = _make_handler(metrics, liveness_timeout_s, request_timeout_s, self.paths)
        self._server = BoundedHTTPServer((host, port), handler, workers=workers, backlog=backlog,
                                         request_deadline_s=request_timeout_s, name=self.name)
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def refused(self) -> int:
        return self._server.refused

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HealthServer(MetricsServer):
    """``/healthz`` and ``/readyz`` alone, on their own port (``observability.health_port``).

    Its own pool (2 workers, 4 queued, more closed at once) and a 1 s whole-request deadline: the
    probes send one short request and kubelet waits 5 s, so a burst of slow or silent connections
    on this port is cut within ``(2 + 4) / 2 * 1`` = 3 s, and nothing done to the metrics port
    reaches it. Nothing here renders ``/metrics``, so an answer costs microseconds.
    """

    paths = HEALTH_PATHS
    name = "health-http"

    def __init__(self, metrics: Metrics, host: str, port: int, liveness_timeout_s: float = 120.0, *,
                 workers: int = 2, backlog: int = 4, request_timeout_s: float = 1.0) -> None:
        super().__init__(metrics, host, port, liveness_timeout_s, workers=workers, backlog=backlog,
                         request_timeout_s=request_timeout_s)


def _make_handler(metrics: Metrics, liveness_timeout_s: float, request_timeout_s: float,
                  paths: tuple[str, ...] = ALL_PATHS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        #: socket timeout: a client that sends nothing (or too slowly) is dropped
        timeout = request_timeout_s

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in paths:
                self._send(404, b"not found\n", "text/plain")
            elif path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                alive = time.monotonic() - metrics.last_loop_monotonic < liveness_timeout_s
                self._send(200 if alive else 503, b"ok\n" if alive else b"main loop stalled\n", "text/plain")
            elif path == "/readyz":
                ready = metrics.assigned and metrics.redis_up and metrics.kafka_up is not False and metrics.schema_registry_up
                body = json.dumps({"assigned": metrics.assigned, "redis_up": metrics.redis_up, "kafka_up": metrics.kafka_up,
                                   "schema_registry_up": metrics.schema_registry_up}).encode()
                self._send(200 if ready else 503, body, "application/json")
            elif path == "/stats":
                self._send(200, json.dumps(metrics.reconciliation()).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def log_message(self, *args: object) -> None:  # keep access logs out of the service log
            return

    return Handler
