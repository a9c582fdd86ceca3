"""Schema registry lookups in the supervisor (issue #23, case 3), against a real HTTP registry
(``tests/stream/registry_server.py``) and, for the service, the real broker.

* A registry answering one byte at a time held each lookup for ~20 s inside the decode worker,
  under ``decode.timeout_s``: good Rubin alerts were dead-lettered as ``decode_timeout`` while
  ``sc_schema_registry_up`` stayed 1. Now a lookup has one overall deadline, runs in the service
  process, and a registry that misses it pauses the line (our fault), dead-lettering nothing.
* A 200 whose schema is not Avro (``schemaType`` PROTOBUF) left the service retrying forever;
  one nested 100,000 deep gave ``internal_error``. Now both are the message's ``bad_schema``,
  and the verdict is cached (asked once).
"""
from __future__ import annotations

import json
import time

import pytest

from schemas.decode.errors import DecodeError, Reason
from schemas.decode.rubin import SchemaRegistryError, rubin_schema_definition
from tests.conftest import SAMPLES
from tests.stream.registry_server import RegistryServer
from tests.stream.test_service import engine_cache, runners  # noqa: F401 - fixtures

RUBIN_ID = 704
PROTOBUF_ID, DEEP_ID, DEEP_BODY_ID, HUGE_ID, NOT_JSON_ID = 9001, 9002, 9003, 9004, 9005
PROTOBUF_ANSWER = json.dumps({"schemaType": "PROTOBUF", "schema": 'syntax = "proto3"; message Alert { int64 id = 1; }'}).encode()
DEEP_ANSWER = json.dumps({"schema": "[" * 100_000 + "]" * 100_000}).encode()
DEEP_BODY = b'{"schema": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _wire(schema_id: int | None = None) -> list[bytes]:
    values = [p.read_bytes() for p in sorted((SAMPLES / "rubin" / "alerce-kafka").glob("*.avro"))]
    if schema_id is None:
        return values
    return [b"\x00" + schema_id.to_bytes(4, "big") + v[5:] for v in values]


@pytest.fixture
def registry():
    with RegistryServer() as server:
        server.schemas[RUBIN_ID] = json.dumps(rubin_schema_definition(RUBIN_ID))
        server.raw_answers.update({
            PROTOBUF_ID: (200, PROTOBUF_ANSWER),
            DEEP_ID: (200, DEEP_ANSWER),
            DEEP_BODY_ID: (200, DEEP_BODY),
            NOT_JSON_ID: (200, b"<html>login</html>"),
            401: (401, b'{"message": "unauthorized"}'),
            500: (500, b"oops"),
            503: (503, b""),
        })
        yield server


def _asked(server: RegistryServer, schema_id: int) -> int:
    return sum(1 for method, path in server.requests if method == "GET" and path == f"/schemas/ids/{schema_id}")


def test_a_registry_answering_a_byte_at_a_time_fails_as_ours_within_the_deadline(registry):
    from stream.schema_registry import registry_fetcher

    registry.byte_delay_s = 0.02  # each read comes well inside any per-read timeout
    fetch = registry_fetcher(registry.url, deadline_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(SchemaRegistryError) as caught:
        fetch(RUBIN_ID)
    took = time.monotonic() - t0
    print(f"\nslow registry: lookup given up after {took:.2f} s (deadline 1 s)")
    assert took < 2.0 and "TimeoutError" in str(caught.value)
    registry.byte_delay_s = 0.0
    assert fetch(RUBIN_ID)["name"] == "lsst.v7_4.alert"


@pytest.mark.parametrize(("schema_id", "fault"), [
    (PROTOBUF_ID, "bad_schema"), (DEEP_ID, "bad_schema"), (DEEP_BODY_ID, "bad_schema"), (HUGE_ID, "bad_schema"),
    (12345, "unknown_schema_id"),
    (401, "ours"), (500, "ours"), (503, "ours"), (NOT_JSON_ID, "ours"),
])
def test_whose_fault_each_registry_answer_is(registry, schema_id, fault):
    from stream.schema_registry import registry_fetcher

    registry.raw_answers[HUGE_ID] = (200, json.dumps({"schema": json.dumps({"type": "record", "name": "x" * 5000, "fields": []})}).encode())
    fetch = registry_fetcher(registry.url, max_bytes=4096)
    if fault == "ours":
        with pytest.raises(SchemaRegistryError):
            fetch(schema_id)
    else:
        with pytest.raises(DecodeError) as caught:
            fetch(schema_id)
        assert caught.value.reason is Reason(fault), caught.value


def test_the_supervisor_asks_once_per_id_and_caches_the_verdicts(registry):
    from schemas.decode.limits import DecodeSettings
    from stream.envelope import decode_values
    from stream.schema_registry import SchemaLookups

    lookups = SchemaLookups(registry.url)
    values = _wire() + _wire(PROTOBUF_ID) + _wire(DEEP_ID)[:1] + [None, b"\x00\x00"]
    for _ in range(3):
        answers = lookups.prepare(values)
        outcomes, _ = decode_values(values, DecodeSettings(), answers)  # what a decode worker does with them
        reasons = [o.reason for o in outcomes]
        assert reasons == [None] * 5 + ["bad_schema"] * 6 + ["empty", "truncated_avro"], reasons
    assert (_asked(registry, RUBIN_ID), _asked(registry, PROTOBUF_ID), _asked(registry, DEEP_ID)) == (1, 1, 1)
    assert lookups.prepare([b"\x00" + (4242).to_bytes(4, "big") + b"x"]).answers  # a 404: not cached, asked again
    lookups.prepare([b"\x00" + (4242).to_bytes(4, "big") + b"x"])
    assert _asked(registry, 4242) == 2


def test_a_registry_that_fails_raises_ours_from_the_supervisor(registry):
    from stream.schema_registry import SchemaLookups

    lookups = SchemaLookups(registry.url)
    for status in (401, 500, 503):
        with pytest.raises(SchemaRegistryError):
            lookups.prepare([b"\x00" + status.to_bytes(4, "big") + b"x"])
    assert not SchemaLookups("").prepare(_wire()), "no registry: the shipped schemas, no lookups"


# ------------------------------------------------------------------- the service, real broker
@pytest.mark.integration
def test_the_service_dead_letters_non_avro_schema_ids_once_asked_and_publishes_the_rest(services, unique_name, engine_cache,
                                                                                        runners, registry):
    from stream.config import load_settings
    from tests.kafka_helpers import produce_values, read_topic
    from tests.stream.test_service import classified, make_topics, settings_env, start_service

    name = unique_name
    make_topics(services, name, partitions=1)
    good = _wire()
    bad = {f"protobuf-{i}": v for i, v in enumerate(_wire(PROTOBUF_ID)[:2])}
    bad |= {"deep": _wire(DEEP_ID)[0], "deep-body": _wire(DEEP_BODY_ID)[0]}
    values = [(b"good-0", good[0]), *[(k.encode(), v) for k, v in bad.items()], *[(f"good-{i}".encode(), v) for i, v in enumerate(good) if i]]
    produce_values(services.bootstrap_servers, f"{name}-alerts", values)
    settings = load_settings(env=settings_env(services, name, engine_cache, SCHEMA_REGISTRY_URL=registry.url,
                                              SC__BATCH__DECODE_WORKERS="1", SC__BATCH__MAX_SIZE="4"))
    service, thread = start_service(settings, runners)
    try:
        dlq = read_topic(services.bootstrap_servers, f"{name}-dlq", expect=len(bad), timeout_s=90)
        records = classified(services, name, expect=len(good))
        deadline = time.monotonic() + 30
        while service.metrics.totals().consumed < len(values) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert thread.is_alive() and service.metrics.schema_registry_up
    finally:
        service.request_stop()
        thread.join(60)
    assert {r.key.decode(): r.headers["sc-reason"].decode() for r in dlq} == dict.fromkeys(bad, "bad_schema")
    assert len(records) == len(good) and {r["survey"] for r in records} == {"rubin"}
    assert _asked(registry, PROTOBUF_ID) == 1 and _asked(registry, RUBIN_ID) == 1, "one lookup per id, verdicts cached"
    totals = service.metrics.totals()
    assert totals.balanced and totals.consumed == len(values) and totals.dead_lettered == len(bad)


@pytest.mark.integration
def test_a_slow_registry_pauses_the_service_instead_of_dead_lettering_good_alerts(services, unique_name, engine_cache, runners,
                                                                                  registry):
    import threading

    from stream.config import load_settings
    from stream.schema_registry import SchemaLookups
    from stream.service import build_service
    from tests.kafka_helpers import produce_values, read_topic
    from tests.stream.test_service import classified, make_topics, settings_env
    from tests.stream.test_service_hostile import _committed

    name = unique_name
    make_topics(services, name, partitions=1)
    good = _wire()
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(f"good-{i}".encode(), v) for i, v in enumerate(good)])
    registry.byte_delay_s = 0.01  # ~130 kB a byte at a time: about 20 minutes per answer
    settings = load_settings(env=settings_env(services, name, engine_cache, SCHEMA_REGISTRY_URL=registry.url,
                                              SC__BATCH__DECODE_WORKERS="1", SC__DECODE__TIMEOUT_S="2"))
    service = build_service(settings, runners=runners, metrics_port=0)
    service.schema_lookups = SchemaLookups(registry.url, deadline_s=1.0)  # the default is 10 s: a shorter test
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while service.metrics.schema_registry_up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not service.metrics.schema_registry_up, "a registry past its deadline is ours: paused"
        time.sleep(4.0)  # longer than decode.timeout_s: nothing may be dead-lettered meanwhile
        totals = service.metrics.totals()
        assert (totals.consumed, totals.published, totals.dead_lettered) == (0, 0, 0)
        assert read_topic(services.bootstrap_servers, f"{name}-dlq", timeout_s=1) == []
        assert _committed(services, name, partitions=1) == []
        assert thread.is_alive()

        registry.byte_delay_s = 0.0
        records = classified(services, name, expect=len(good))
        deadline = time.monotonic() + 30
        while not service.metrics.schema_registry_up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.metrics.schema_registry_up
    finally:
        service.request_stop()
        thread.join(60)
    assert len(records) == len(good)
    totals = service.metrics.totals()
    assert totals.balanced and totals.published == len(good) and totals.dead_lettered == 0
    assert read_topic(services.bootstrap_servers, f"{name}-dlq", timeout_s=1) == []
