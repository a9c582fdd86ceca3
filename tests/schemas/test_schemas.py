"""Our shipped schemas: loadable as package data, valid, and compatible across versions."""
from __future__ import annotations

import io

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

import schemas

FIELDS_THE_SERVICE_USES = [
    "schema_version", "survey", "kind", "alert_id", "object_id", "ra", "dec", "mjd", "band", "real_bogus",
    "class_scores", "models", "untrained", "survey_scores", "survey_score_versions", "source_topic",
    "source_partition", "source_offset", "source_timestamp_ms", "ingested_ms", "classified_ms", "classifier_version",
]


def _sample(version: str) -> dict:
    record = {
        "schema_version": version, "survey": "ztf", "kind": "difference_alert", "alert_id": "1", "object_id": "ZTF1",
        "ra": 1.0, "dec": 2.0, "mjd": 60000.5, "band": "g", "real_bogus": 0.9, "class_scores": {"sn": 1.0},
        "models": [{"name": "realbogus", "version": "1", "weights_sha256": "0" * 64, "backend": "torch",
                    "trained": True, "scores": {"real": 0.9, "bogus": 0.1}}],
        "untrained": False, "survey_scores": {"drb": 0.99}, "survey_score_versions": {"drb": "d6_m7"},
        "source_topic": "alerts", "source_partition": 0, "source_offset": 5, "source_timestamp_ms": 1,
        "ingested_ms": 2, "classified_ms": 3, "classifier_version": "0.1.0",
    }
    if version == "1.1":
        record["processing_host"] = "pod-1"
    return record


def test_versions_shipped_and_loadable():
    assert schemas.available_versions("classified") == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert schemas.available_versions("exposure") == [(1, 0)]
    assert schemas.latest_version("classified") == (1, 3)
    for family in ("classified", "exposure"):
        for version in schemas.available_versions(family):
            assert schemas.schema_path(family, *version).is_file()
            fastavro.parse_schema(schemas.load_schema(family, *version))
    with pytest.raises(FileNotFoundError):
        schemas.schema_path("classified", 9, 9)


def test_field_names_the_service_depends_on():
    for version in schemas.available_versions("classified"):
        names = [f["name"] for f in schemas.load_schema("classified", *version)["fields"]]
        assert names[: len(FIELDS_THE_SERVICE_USES)] == FIELDS_THE_SERVICE_USES


def _write(version: tuple[int, int], record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schemas.load_schema("classified", *version)), record)
    return buf.getvalue()


def _read(data: bytes, writer: tuple[int, int], reader: tuple[int, int]) -> dict:
    return fastavro.schemaless_reader(
        io.BytesIO(data),
        fastavro.parse_schema(schemas.load_schema("classified", *writer)),
        fastavro.parse_schema(schemas.load_schema("classified", *reader)),
    )


def test_backward_compatible_new_reader_reads_old_data():
    old = _sample("1.0")
    assert _read(_write((1, 0), old), (1, 0), (1, 1)) == {**old, "processing_host": None}


def test_forward_compatible_old_reader_reads_new_data():
    new = _sample("1.1")
    read = _read(_write((1, 1), new), (1, 1), (1, 0))
    assert read == {k: v for k, v in new.items() if k != "processing_host"}


def test_resolution_really_checks_names():
    """The compatibility tests above would catch a renamed record: fastavro refuses it."""
    renamed = schemas.load_schema("classified", 1, 1)
    renamed["name"] = "something_else"
    with pytest.raises(SchemaResolutionError):
        fastavro.schemaless_reader(io.BytesIO(_write((1, 0), _sample("1.0"))),
                                   fastavro.parse_schema(schemas.load_schema("classified", 1, 0)),
                                   fastavro.parse_schema(renamed))
