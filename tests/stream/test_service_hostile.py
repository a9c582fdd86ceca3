"""No message can stop the line, and our own faults never turn good input into dead letters.

Against the real broker and Redis (embedded stack or the services named in the environment):

* a schema registry that cannot be reached pauses consuming: nothing published, nothing
  dead-lettered, no offset committed; once it answers (a tiny real HTTP server), everything is;
* crafted hostile messages interleaved with real packets go through the real service (its own
  process, decode watchdog on): each hostile one is dead-lettered with its reason, the real ones
  are published, the service keeps running, ``/stats`` reconciles, the process tree's peak memory
  stays under a stated bound, and SIGTERM stops it within a stated bound.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.decode.errors import Reason
from stream.config import load_settings
from stream.decode_pool import DECODE_MEMORY_LIMIT, DECODE_TIMEOUT, DECODE_WORKER_CRASHED
from tests.conftest import REPO, SAMPLES
from tests.kafka_helpers import produce_values, read_topic
from tests.stream.hostile_messages import (
    GARBAGE,
    deflate_boolean_container,
    endless_container,
    fits_tile_bomb,
    real_ztf_packets,
    ztf_alert_with_a_long_history_name,
    ztf_alert_with_cutout,
    ztf_alert_with_string_candid,
)
from tests.stream.test_service import classified, engine_cache, make_topics, runners, settings_env, start_service  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

#: Peak resident memory of the service's whole process tree (service + decode worker) while the
#: hostile corpus goes through it. Measured: see the test's printed line; the bound is generous.
PEAK_RSS_BOUND_MB = 3000
#: SIGTERM to exit while a hostile message holds the decode worker: decode.timeout_s (the stop
#: grace) + closing the clients. Measured: see the printed line.
SIGTERM_BOUND_S = 30.0
WATCHDOG_REASONS = {DECODE_TIMEOUT, DECODE_MEMORY_LIMIT, DECODE_WORKER_CRASHED}
TYPED_REASONS = {r.value for r in Reason}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rubin_wire_messages() -> list[bytes]:
    return [p.read_bytes() for p in sorted((SAMPLES / "rubin" / "alerce-kafka").glob("*.avro"))]


def _schema_definitions(values: list[bytes]) -> dict[int, str]:
    from schemas.decode.rubin import rubin_schema_definition

    ids = {int.from_bytes(v[1:5], "big") for v in values}
    return {i: json.dumps(rubin_schema_definition(i)) for i in ids}


class _Registry:
    """A real HTTP schema registry serving ``GET /schemas/ids/{id}``, requiring Basic auth."""

    def __init__(self, port: int, schemas: dict[int, str], user: str, password: str) -> None:
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                try:
                    schema_id = int(self.path.rsplit("/", 1)[1])
                    body = json.dumps({"schema": schemas[schema_id]}).encode()
                except (ValueError, KeyError):
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _committed(services, name: str, partitions: int = 4) -> list[int]:
    consumer = Consumer({"bootstrap.servers": services.bootstrap_servers, "group.id": f"{name}-group",
                         "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(f"{name}-alerts", p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps if tp.offset >= 0]
    finally:
        consumer.close()


def test_unreachable_registry_pauses_without_dead_letters_or_commits_then_resumes(services, unique_name, engine_cache, runners, capfd):
    name = unique_name
    make_topics(services, name)
    wire = _rubin_wire_messages()
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(f"w{i}".encode(), v) for i, v in enumerate(wire)])
    port = _free_port()  # nothing listens here yet: connection refused
    password = "pw-s3cret-4711"
    env = settings_env(services, name, engine_cache, SCHEMA_REGISTRY_URL=f"http://reader:{password}@127.0.0.1:{port}",
                       SC__REDIS__RETRY_INITIAL_S="0.2", SC__REDIS__RETRY_MAX_S="0.5")
    settings = load_settings(env=env)
    assert password not in repr(settings)
    service, thread = start_service(settings, runners)
    registry = None
    try:
        deadline = time.monotonic() + 60
        while service.metrics.schema_registry_up and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not service.metrics.schema_registry_up, "the service noticed the registry is unreachable"
        time.sleep(2.0)  # several retries
        totals = service.metrics.totals()
        assert (totals.consumed, totals.published, totals.dead_lettered) == (0, 0, 0)
        assert read_topic(services.bootstrap_servers, f"{name}-dlq", timeout_s=2) == []
        assert _committed(services, name) == [], "no offset committed past a message the registry could not serve"
        assert thread.is_alive()

        registry = _Registry(port, _schema_definitions(wire), "reader", password)
        records = classified(services, name, expect=len(wire))
        assert len(records) == len(wire) and {r["survey"] for r in records} == {"rubin"}
        deadline = time.monotonic() + 30
        while not service.metrics.schema_registry_up and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.metrics.schema_registry_up
        assert registry.requests and all(r.startswith("/schemas/ids/") for r in registry.requests)
    finally:
        service.request_stop()
        thread.join(60)
        if registry is not None:
            registry.close()
    assert not thread.is_alive()
    out, err = capfd.readouterr()
    assert "schema_registry_unreachable" in out + err and password not in out + err, "logged, without the password"
    totals = service.metrics.totals()
    assert totals.balanced and totals.published == len(wire) and totals.dead_lettered == 0
    assert sum(_committed(services, name)) == len(wire)
    assert read_topic(services.bootstrap_servers, f"{name}-dlq", timeout_s=2) == []


# ---------------------------------------------------------------- the hostile corpus, real service

def _hostile_cases() -> dict[str, tuple[bytes, set[str]]]:
    """name -> (message value, acceptable dead-letter reasons). Today's decoders loop on the
    endless container and allocate on the tile bomb (the watchdog's reasons); decoders that
    check sizes first refuse them with a typed reason instead."""
    typed_or_watchdog = TYPED_REASONS | WATCHDOG_REASONS
    # A string candid raises a plain ValueError in decoders that predate typed field reasons;
    # once Reason has BAD_FIELD_TYPE the case must carry it (this tightens itself then).
    field_type = {"bad_field_type"} if "bad_field_type" in TYPED_REASONS else {"bad_field_type", "internal_error"}
    return {
        "endless_null_container": (endless_container(), typed_or_watchdog),
        "endless_empty_record_container": (endless_container(b'{"type":"record","name":"e","fields":[]}'), typed_or_watchdog),
        "deflate_boolean_container": (deflate_boolean_container(), typed_or_watchdog),
        "fits_tile_bomb_cutout": (ztf_alert_with_cutout(fits_tile_bomb(), candid=1), typed_or_watchdog),
        "string_candid": (ztf_alert_with_string_candid(), field_type),
        "garbage": (GARBAGE, {Reason.UNKNOWN_FORMAT.value, Reason.BAD_MAGIC.value}),
    }


def test_a_registry_back_up_is_used_within_a_probe_not_after_the_backoff(services, unique_name, engine_cache, runners):
    """The backoff starts at 20 s; the registry comes up about 1 s after the first failure: the
    batch is decoded and published within seconds (before the probe, after the full 20 s)."""
    name = unique_name
    make_topics(services, name)
    wire = _rubin_wire_messages()
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(f"w{i}".encode(), v) for i, v in enumerate(wire)])
    port = _free_port()
    env = settings_env(services, name, engine_cache, SCHEMA_REGISTRY_URL=f"http://reader:pw@127.0.0.1:{port}",
                       SC__REDIS__RETRY_INITIAL_S="20", SC__REDIS__RETRY_MAX_S="30")
    service, thread = start_service(load_settings(env=env), runners)
    registry = None
    try:
        deadline = time.monotonic() + 60
        while service.metrics.schema_registry_up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not service.metrics.schema_registry_up
        time.sleep(1.0)
        registry = _Registry(port, _schema_definitions(wire), "reader", "pw")
        up_at = time.monotonic()
        records = classified(services, name, expect=len(wire), timeout_s=60)
        took = time.monotonic() - up_at
        assert len(records) == len(wire)
        assert took < 12.0, f"published {took:.1f} s after the registry came up (backoff 20 s)"
    finally:
        service.request_stop()
        thread.join(60)
        if registry is not None:
            registry.close()
    assert not thread.is_alive() and service.metrics.totals().balanced


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (Linux /proc)."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as fh:
                    stack += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return total


def _get_json(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.slow
def test_hostile_corpus_through_the_real_service(services, unique_name, engine_cache, runners, tmp_path):
    name = unique_name
    make_topics(services, name, partitions=1)  # one partition: hostile ones sit between good ones in order
    cases = _hostile_cases()
    good = [p.read_bytes() for p in real_ztf_packets(10)]
    from schemas.decode import decode_message

    good_keys = {item.key for v in good for item in decode_message(v)}
    values: list[tuple[bytes, bytes]] = []
    hostile = iter(cases.items())
    for i, v in enumerate(good):
        values.append((f"good-{i}".encode(), v))
        case = next(hostile, None)
        if case is not None:
            values.append((case[0].encode(), case[1][0]))
    produce_values(services.bootstrap_servers, f"{name}-alerts", values)

    metrics_port = _free_port()
    env = {**os.environ, **settings_env(services, name, engine_cache, SC__BATCH__DECODE_WORKERS="1", SC__BATCH__MAX_SIZE="8",
                                        SC__DECODE__TIMEOUT_S="4", SC__DECODE__WORKER_MEMORY_MB="1024",
                                        SC__OBSERVABILITY__METRICS_PORT=str(metrics_port),
                                        SC__OBSERVABILITY__LOG_FORMAT="json"), "PYTHONPATH": str(REPO)}
    log_path = tmp_path / "service.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "--allow-untrained"], cwd=REPO, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
        peak = 0
        try:
            deadline = time.monotonic() + 240
            stats: dict = {}
            while time.monotonic() < deadline and proc.poll() is None:
                peak = max(peak, _tree_rss_bytes(proc.pid))
                try:
                    _, stats = _get_json(metrics_port, "/stats")
                except OSError:
                    stats = {}
                consumed = sum(c["consumed"] for c in stats.values())
                if consumed >= len(values):
                    break
                time.sleep(0.1)
            assert proc.poll() is None, "the service keeps running: " + log_path.read_text()[-3000:]
            assert sum(c["consumed"] for c in stats.values()) == len(values), f"stats: {stats}"
            assert all(c["balanced"] for c in stats.values()), stats
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5) as r:
                assert r.status == 200

            # SIGTERM while a hostile message holds the decode worker
            produce_values(services.bootstrap_servers, f"{name}-alerts", [(b"late-endless", endless_container())])
            time.sleep(1.5)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(SIGTERM_BOUND_S + 30)
            stop_s = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    print(f"\nhostile corpus: peak RSS of the service tree {peak / 2**20:.0f} MiB (bound {PEAK_RSS_BOUND_MB}); "
          f"SIGTERM to exit {stop_s:.1f} s (bound {SIGTERM_BOUND_S:.0f})")
    assert stop_s < SIGTERM_BOUND_S
    assert peak < PEAK_RSS_BOUND_MB * 2**20

    records = classified(services, name, expect=len(good_keys))
    assert {f"{r['survey']}:{r['alert_id']}" for r in records} == good_keys
    dlq = read_topic(services.bootstrap_servers, f"{name}-dlq", expect=len(cases), timeout_s=30)
    by_key = {r.key.decode(): r.headers for r in dlq}
    # the one in hand at SIGTERM is finished (dead-lettered) when its decode limit comes before the stop grace
    late = by_key.pop("late-endless", None)
    assert late is None or late["sc-reason"].decode() in TYPED_REASONS | WATCHDOG_REASONS
    assert set(by_key) == set(cases)
    for case, (_, allowed) in cases.items():
        reason = by_key[case]["sc-reason"].decode()
        assert reason in allowed, f"{case}: {reason} ({by_key[case]['sc-detail'].decode()[:200]})"
    print("hostile corpus reasons: " + ", ".join(f"{c}={by_key[c]['sc-reason'].decode()}" for c in cases))


def test_every_case_of_the_hostile_corpus_is_dead_lettered_with_its_reason(services, unique_name, engine_cache, runners):
    """The whole decode corpus (tests/hostile/corpus.py: crafted bombs, hostile field types, mutated
    real packets and schemas) interleaved with real packets, through the real service on the real
    broker: each case ends as a dead letter carrying exactly the reason the corpus names, every real
    packet is published, and the per-partition accounts balance."""
    from schemas.decode import decode_message
    from tests.hostile.corpus import hostile_cases

    name = unique_name
    make_topics(services, name, partitions=1)
    cases = hostile_cases()
    good = [p.read_bytes() for p in real_ztf_packets(len(cases))]
    good_keys = {item.key for v in good for item in decode_message(v)}
    values = [pair for i, case in enumerate(cases)
              for pair in ((case.name.encode(), case.value), (f"good-{i}".encode(), good[i % len(good)]))]
    # a good packet whose history the skipper cannot skip (a file name over 191 bytes): published, and counted
    slow = ztf_alert_with_a_long_history_name()
    good_keys |= {item.key for item in decode_message(slow)}
    values.append((b"slow-history", slow))
    produce_values(services.bootstrap_servers, f"{name}-alerts", values)
    settings = load_settings(env=settings_env(services, name, engine_cache, SC__BATCH__MAX_SIZE="16"))
    service, thread = start_service(settings, runners)
    try:
        dlq = read_topic(services.bootstrap_servers, f"{name}-dlq", expect=len(cases), timeout_s=120)
        records = classified(services, name, expect=len(good_keys))
        deadline = time.monotonic() + 30
        while service.metrics.totals().consumed < len(values) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert thread.is_alive(), "no message stops the line"
    finally:
        service.request_stop()
        thread.join(60)
    reasons = {r.key.decode(): r.headers["sc-reason"].decode() for r in dlq}
    assert reasons == {case.name: case.reason for case in cases}
    assert {f"{r['survey']}:{r['alert_id']}" for r in records} == good_keys
    totals = service.metrics.totals()
    assert totals.balanced and totals.consumed == len(values) and totals.dead_lettered == len(cases)
    assert "internal_error" not in reasons.values()
    assert service.metrics.registry.get_sample_value("sc_decode_history_slow_reads_total") == 1
    assert service.metrics.registry.get_sample_value("sc_decode_worker_restarts_total") == 0
