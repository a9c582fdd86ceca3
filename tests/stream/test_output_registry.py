"""The classified schema in a Confluent-compatible registry: registered per output topic, records
framed with the registry's id, read back by confluent-kafka's stock ``AvroDeserializer``; a
refused schema stops the service before anything is published; BACKWARD evolution accepted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.classified_record import (
    CLASSIFIED_VERSIONS,
    LATEST_CLASSIFIED_VERSION,
    build_classified_record,
    classified_schema,
    decode_classified,
    encode_classified,
)
from schemas.decode import decode_message
from schemas.decode.avro import split_wire
from schemas.provenance import ModelProvenance
from stream.config import load_settings
from stream.output_registry import RegistryClient, SchemaRegistrationRefused, register_output_schemas, registry_schema_lookup, subject_for
from tests.conftest import REPO, SAMPLES
from tests.stream.registry_server import RegistryServer


@pytest.fixture
def registry():
    with RegistryServer() as server:
        yield server


def _record() -> dict:
    alert = decode_message((SAMPLES / "ztf" / "alerce" / "3044341005815015012.avro").read_bytes())[0]
    provenance = ModelProvenance(name="realbogus", version="1.0.0", weights_sha256="ab" * 32, backend="onnxruntime",
                                 trained=True, extra={"real_bogus": True}, surveys=("ztf",))
    return build_classified_record(alert, [(provenance, {"real": 0.9, "bogus": 0.1})], source_topic="alerts",
                                   source_partition=0, source_offset=7, source_timestamp_ms=1, ingested_ms=2,
                                   classified_ms=3, classifier_version="0.1.0")


def test_registered_records_read_back_by_the_stock_deserializer(registry) -> None:
    framing = register_output_schemas(registry.url, ["classified"])
    schema_id = framing.ids["classified"]
    assert "classified-value" in registry.subjects and registry.subjects["classified-value"] == [schema_id]
    record = _record()
    fixed = encode_classified(record)
    framed = framing.frame("classified", fixed)
    assert split_wire(framed)[0] == schema_id != split_wire(fixed)[0]
    assert framing.frame("other-topic", fixed) == fixed  # an unregistered topic keeps the fixed id

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    read = deserializer(framed, SerializationContext("classified", MessageField.VALUE))
    assert read["alert_id"] == record["alert_id"] and read["real_bogus"] == pytest.approx(0.9)
    assert read["schema_version"] == "{}.{}".format(*LATEST_CLASSIFIED_VERSION)
    # our own decoder reads registry ids given the registry, and the fixed ids either way
    assert decode_classified(framed, registry_schema_lookup(registry.url))["alert_id"] == record["alert_id"]
    assert decode_classified(fixed)["alert_id"] == record["alert_id"]
    with pytest.raises(Exception, match="registry"):
        decode_classified(framed)


def test_record_name_strategy_and_idempotent_registration(registry) -> None:
    first = register_output_schemas(registry.url, ["classified", "classified-exposures"], strategy="record")
    again = register_output_schemas(registry.url, ["classified"], strategy="record")
    assert list(registry.subjects) == ["survey_classifier.classified"]
    assert first.ids["classified"] == first.ids["classified-exposures"] == again.ids["classified"]
    assert subject_for("t", classified_schema(), "topic") == "t-value"


def test_every_shipped_version_evolves_backward_compatibly(registry) -> None:
    client = RegistryClient(registry.url)
    ids = [client.register("evolution-value", classified_schema(v)) for v in CLASSIFIED_VERSIONS]
    assert len(set(ids)) == len(CLASSIFIED_VERSIONS)  # each version accepted at the BACKWARD level


def test_a_refused_schema_stops_the_service_before_anything_is_published(registry) -> None:
    from stream.service import build_service

    # Someone else's schema already holds the subject: ours cannot read it (BACKWARD fails).
    other = {"type": "record", "name": "classified", "namespace": "survey_classifier",
             "fields": [{"name": "alert_id", "type": "long"}]}
    RegistryClient(registry.url).register("refused-value", other)
    settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0",
                                  "SC__KAFKA__OUTPUT_TOPIC": "refused",
                                  "SC__KAFKA__OUTPUT_SCHEMA_REGISTRY_URL": registry.url})
    with pytest.raises(SchemaRegistrationRefused, match="incompatible"):
        build_service(settings)  # raises before runners, Redis, metrics or any Kafka client exist
    assert registry.subjects["refused-value"] == [1]


def test_the_run_command_reports_a_refused_schema_in_one_line(registry) -> None:
    RegistryClient(registry.url).register("refused-value", {"type": "record", "name": "classified",
                                                            "namespace": "survey_classifier",
                                                            "fields": [{"name": "alert_id", "type": "long"}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SC__", "SC_KAFKA__", "KAFKA_", "REDIS_"))}
    env.update({"PYTHONPATH": str(REPO), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0",
                "SC__KAFKA__OUTPUT_TOPIC": "refused", "SC__KAFKA__OUTPUT_SCHEMA_REGISTRY_URL": registry.url,
                "SC__KAFKA__UNREACHABLE_WARN_INTERVAL_S": "1", "SC__OBSERVABILITY__METRICS_PORT": "0",
                "SC__OBSERVABILITY__HEALTH_PORT": "0"})
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "run"], capture_output=True, text=True, env=env, timeout=60,
                          cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "refused the classified schema for subject 'refused-value'" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.integration
def test_service_publishes_registry_framed_records(services, unique_name, registry, tmp_path) -> None:
    from stream.service import build_service
    from stream.stack import create_topics
    from stream.subscribe import subscribe
    from tests.kafka_helpers import produce_files, read_topic
    from tests.stream.test_service import settings_env

    name = unique_name
    create_topics(services.bootstrap_servers, [f"{name}-alerts", f"{name}-classified", f"{name}-dlq"], partitions=2)
    files = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:6]
    produce_files(services.bootstrap_servers, f"{name}-alerts", files)
    env = settings_env(services, name, tmp_path / "engines", SC__KAFKA__OUTPUT_SCHEMA_REGISTRY_URL=registry.url,
                       SC__ENGINE__MODELS="realbogus")
    service = build_service(load_settings(env=env), metrics_port=0)
    service.run(max_idle_s=3)
    schema_id = registry.subjects[f"{name}-classified-value"][0]
    values = [r.value for r in read_topic(services.bootstrap_servers, f"{name}-classified", expect=len(files))]
    assert len(values) == len(files) and {split_wire(v)[0] for v in values} == {schema_id}
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    read = [deserializer(v, SerializationContext(f"{name}-classified", MessageField.VALUE)) for v in values]
    assert sorted(r["alert_id"] for r in read) == sorted(str(decode_message(p.read_bytes())[0].alert_id) for p in files)
    kept = list(subscribe(services.bootstrap_servers, f"{name}-classified", schema_registry_url=registry.url))
    assert len(kept) == len(files)
    assert json.loads(registry.schemas[schema_id])["name"] == "classified"
