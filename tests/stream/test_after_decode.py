"""Nothing after decode stops the line (issue #23, case 1).

Valid-looking inputs whose trouble came after decode used to crash the service into a restart
loop: ``candidate.candid`` declared ``double`` holding ``inf`` (OverflowError in the projection)
or ``1e30`` (the record codec's ValueError), a 6 MB ``objectId`` (record and key over
``message.max.bytes``), a WISE cutout carrying only W1 (PreprocessError). Now decode refuses
what it can see (ids out of a 64-bit range, over-long text, missing bands) and the service
dead-letters as ``unscorable`` whatever still fails one item's preprocessing, record building,
encoding or size check, while the rest of the batch is published. ``inspect`` and ``classify``
print a line for such an input, never a traceback.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest

from schemas.alert import InputKind, ReadOnlyFields
from schemas.classified_record import decode_classified
from schemas.decode import decode_message
from schemas.decode.errors import DecodeError
from stream.config import load_settings
from stream.envelope import Envelope
from stream.stack import create_topics
from tests.conftest import REPO
from tests.kafka_helpers import produce_values, read_topic
from tests.stream.hostile_messages import (
    real_ztf_packets,
    wise_cutout,
    ztf_alert_with_candidate_candid,
    ztf_alert_with_object_id,
)

#: name -> (message value builder, topic kind, reason it must be dead-lettered with)
HOSTILE = {
    "candid_inf": (lambda: ztf_alert_with_candidate_candid(float("inf")), "alerts", "invalid_field"),
    "candid_1e30": (lambda: ztf_alert_with_candidate_candid(1e30), "alerts", "bad_field_type"),
    "object_id_6mb": (lambda: ztf_alert_with_object_id("Z" * 6_000_000), "alerts", "invalid_field"),
    "wise_w1_only": (lambda: wise_cutout(("W1",), exposure_id="wise-w1-only"), "exposures", "missing_field"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_inputs_that_failed_after_decode_are_refused_by_decode_with_a_reason(case):
    build, _, reason = HOSTILE[case]
    with pytest.raises(DecodeError) as caught:
        decode_message(build())
    assert caught.value.reason.value == reason, caught.value


def test_ids_text_and_bands_within_limits_still_decode():
    """The checks refuse only what a later stage cannot use: a 256-character objectId, a real
    packet, a WISE cutout with its three bands all decode."""
    (alert,) = decode_message(ztf_alert_with_object_id("Z" * 256))
    assert len(alert.object_id) == 256
    assert decode_message(real_ztf_packets(1)[0].read_bytes())
    (cutout,) = decode_message(wise_cutout())
    assert sorted(cutout.images) == ["W1", "W2", "W3"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_inspect_and_classify_print_a_line_for_each_hostile_input_never_a_traceback(tmp_path):
    paths = []
    for case, (build, _, _) in HOSTILE.items():
        path = tmp_path / f"{case}.avro"
        path.write_bytes(build())
        paths.append(path)
    good = real_ztf_packets(1)[0]

    inspected = _cli("inspect", *map(str, paths), str(good))
    assert "Traceback" not in inspected.stderr, inspected.stderr[-2000:]
    lines = [json.loads(line) for line in inspected.stdout.splitlines()]
    errors = {line["file"].rsplit("/", 1)[-1].removesuffix(".avro"): line["error"] for line in lines if "error" in line}
    assert errors == {case: reason for case, (_, _, reason) in HOSTILE.items()}
    assert lines[-1]["decoded"] == 1 and lines[-1]["failed"] == len(HOSTILE)
    assert inspected.returncode == 1

    classified = _cli("classify", "--allow-untrained", *map(str, paths), str(good))
    assert "Traceback" not in classified.stderr, classified.stderr[-2000:]
    lines = [json.loads(line) for line in classified.stdout.splitlines()]
    assert sorted(line["error"] for line in lines if "error" in line) == sorted(r for _, _, r in HOSTILE.values())
    assert [line["alert_id"] for line in lines if "error" not in line] == [str(decode_message(good.read_bytes())[0].alert_id)]
    assert classified.returncode == 1


# ------------------------------------------------------------------- the stages, real models
@pytest.fixture(scope="module")
def real_runners(tmp_path_factory):
    """The shipped realbogus and iicnet, on torch (no export needed)."""
    from engines.registry import load_registry
    from engines.scoring import load_kind_runners

    registry, cache = load_registry(), str(tmp_path_factory.mktemp("engines"))
    runners = {
        InputKind.DIFFERENCE_ALERT: load_kind_runners(registry, InputKind.DIFFERENCE_ALERT, backend="torch", device="cpu",
                                                      cache_dir=cache, models=["realbogus"], allow_untrained=True),
        InputKind.MULTIBAND_CUTOUT: load_kind_runners(registry, InputKind.MULTIBAND_CUTOUT, backend="torch", device="cpu",
                                                      cache_dir=cache, models=["iicnet"], allow_untrained=True),
    }
    yield runners
    for rs in runners.values():
        for r in rs:
            r.close()


def _env(offset: int, topic: str = "in") -> Envelope:
    return Envelope(topic, 0, offset, 1_700_000_000_000, None, b"value")


def test_a_batch_with_inputs_no_stage_can_use_publishes_the_rest_and_dead_letters_each_as_unscorable(real_runners):
    """Items built past the decoder's checks (as a decoder with a missed check would hand them on),
    through the real models: a WISE cutout missing W2/W3 fails the batched preprocessing, so the
    batch is scored item by item and only it is refused; a record whose ``band`` is not text
    cannot be encoded; one over the size limit is refused before produce()."""
    from stream import stages

    good_cutouts = [decode_message(wise_cutout(exposure_id=f"wise-{i}"))[0] for i in range(3)]
    w1_only = dataclasses.replace(good_cutouts[0], exposure_id="wise-w1-only", images={"W1": good_cutouts[0].images["W1"]})
    alerts = [decode_message(p.read_bytes())[0] for p in real_ztf_packets(3)]
    unencodable = dataclasses.replace(alerts[1], band=12345, candidate=ReadOnlyFields({**alerts[1].candidate, "candid": 1e30}))
    oversized = dataclasses.replace(alerts[2], object_id="Z" * 6_000_000)
    fresh = [(_env(0), good_cutouts[0]), (_env(1), w1_only), (_env(2), good_cutouts[1]), (_env(3), good_cutouts[2]),
             (_env(4), alerts[0]), (_env(5), unencodable), (_env(6), oversized)]
    topics = stages.OutputTopics(alerts="classified", exposures="classified-exp")

    with pytest.raises(ValueError):  # without a refused list the stage raises, as before
        stages.score(fresh, real_runners, topics)
    refused: list = []
    scored = stages.score(fresh, real_runners, topics, refused=refused)
    assert [o.reason for _, o in refused] == ["unscorable"] and refused[0][0].offset == 1
    assert "missing bands" in refused[0][1].detail and "exposure:wise-w1-only" in refused[0][1].detail
    assert sorted(s.envelope.offset for s in scored) == [0, 2, 3, 4, 5, 6]

    messages, kept, not_built = stages.classified_messages(
        scored, max_record_bytes=1_000_000, ingested_ms=1, classifier_version="test",
        processing_host="h")
    assert sorted(s.envelope.offset for s in kept) == [0, 2, 3, 4] == sorted(
        next(s.envelope.offset for s in kept if s.item.key == m.token) for m in messages)
    why = {env.offset: outcome for env, outcome in not_built}
    assert set(why) == {5, 6} and {o.reason for o in why.values()} == {"unscorable"}
    assert "record not built" in why[5].detail and "> 1000000" in why[6].detail
    for m in messages:
        assert decode_classified(m.value)["alert_id"]


# ------------------------------------------------------------------- the real service, real broker

@pytest.mark.integration
def test_the_service_dead_letters_each_input_that_used_to_crash_it_and_publishes_the_rest(services, unique_name, tmp_path):
    from stream.service import build_service
    from tests.stream.test_service import settings_env

    name = unique_name
    create_topics(services.bootstrap_servers, [f"{name}-alerts", f"{name}-exposures", f"{name}-classified",
                                               f"{name}-classified-exp", f"{name}-dlq"], partitions=1)
    good_alerts = [p.read_bytes() for p in real_ztf_packets(6)]
    good_keys = {item.key for v in good_alerts for item in decode_message(v)}
    long_id = ztf_alert_with_object_id("Y" * 256, base=real_ztf_packets(8)[7])  # decodes; its record is made too big below
    alerts, exposures = [], [(b"wise-good-0", wise_cutout(exposure_id="wise-good-0"))]
    for i, (case, (build, where, _)) in enumerate(HOSTILE.items()):
        (alerts if where == "alerts" else exposures).append((case.encode(), build()))
        alerts.append((f"good-{i}".encode(), good_alerts[i]))
    alerts += [(b"long_id_record", long_id)] + [(f"good-{i}".encode(), v) for i, v in enumerate(good_alerts) if i >= len(HOSTILE)]
    exposures.append((b"wise-good-1", wise_cutout(exposure_id="wise-good-1")))
    produce_values(services.bootstrap_servers, f"{name}-alerts", alerts)
    produce_values(services.bootstrap_servers, f"{name}-exposures", exposures)

    env = settings_env(services, name, tmp_path, SC__KAFKA__EXPOSURE_TOPICS=f"{name}-exposures",
                       SC__KAFKA__EXPOSURE_OUTPUT_TOPIC=f"{name}-classified-exp", SC__ENGINE__MODELS="realbogus,iicnet",
                       SC__ENGINE__BACKEND="torch", SC__BATCH__MAX_SIZE="16")
    service = build_service(load_settings(env=env), metrics_port=0)
    # a limit between an ordinary record and the one carrying a 256-character objectId twice (value and key)
    service.max_record_bytes = 900
    t0 = time.monotonic()
    service.run(max_idle_s=4)  # returns: no input stops the line
    print(f"\nservice run over {len(alerts) + len(exposures)} messages: {time.monotonic() - t0:.1f} s")

    dlq = read_topic(services.bootstrap_servers, f"{name}-dlq", expect=len(HOSTILE) + 1, timeout_s=30)
    reasons = {r.key.decode(): r.headers["sc-reason"].decode() for r in dlq}
    assert reasons == {**{case: reason for case, (_, _, reason) in HOSTILE.items()}, "long_id_record": "unscorable"}
    detail = next(r.headers["sc-detail"].decode() for r in dlq if r.key == b"long_id_record")
    assert "> 900" in detail
    records = [decode_classified(r.value) for r in read_topic(services.bootstrap_servers, f"{name}-classified", expect=len(good_keys))]
    assert {f"{r['survey']}:{r['alert_id']}" for r in records} == good_keys
    cutouts = [decode_classified(r.value) for r in read_topic(services.bootstrap_servers, f"{name}-classified-exp", expect=2)]
    assert sorted(r["alert_id"] for r in cutouts) == ["wise-good-0", "wise-good-1"]
    totals = service.metrics.totals()
    assert totals.balanced and totals.consumed == len(alerts) + len(exposures)
    assert totals.dead_lettered == len(HOSTILE) + 1


@pytest.mark.integration
def test_several_dead_letters_from_one_message_are_all_acknowledged(services, unique_name, tmp_path):
    """A container holding two exposures, on a member that scores alerts only: two dead letters
    name the same source message. Their delivery reports used to share one token, so the batch
    counted one acknowledgement short and raised PublishError on every restart."""
    import io as _io

    import fastavro

    import schemas
    from schemas.decode.exposure import EXPOSURE_ID_OFFSET
    from stream.service import build_service
    from tests.stream.test_service import make_topics, settings_env

    major, minor = schemas.latest_version("exposure")
    schema = schemas.load_schema("exposure", major, minor)
    value = wise_cutout(exposure_id="c-0")
    record = fastavro.schemaless_reader(_io.BytesIO(value[5:]), fastavro.parse_schema(schema))
    assert int.from_bytes(value[1:5], "big") >= EXPOSURE_ID_OFFSET
    buf = _io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [record, dict(record, exposure_id="c-1")])
    name = unique_name
    make_topics(services, name, partitions=1)
    good = real_ztf_packets(1)[0].read_bytes()
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(b"two-exposures", buf.getvalue()), (b"good", good)])
    service = build_service(load_settings(env=settings_env(services, name, tmp_path, SC__ENGINE__MODELS="realbogus",
                                                           SC__ENGINE__BACKEND="torch")), metrics_port=0)
    service.run(max_idle_s=4)
    dlq = read_topic(services.bootstrap_servers, f"{name}-dlq", expect=2, timeout_s=30)
    assert [r.headers["sc-reason"].decode() for r in dlq] == ["unsupported_kind"] * 2
    assert len(read_topic(services.bootstrap_servers, f"{name}-classified", expect=1)) == 1
    totals = service.metrics.totals()
    assert totals.balanced and totals.dead_lettered == 2 and totals.published == 1
