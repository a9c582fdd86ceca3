"""The classified output record: build it from an input and its scores, encode and decode it.

Schema: ``schemas/classified/v<major>_<minor>.avsc``, framed as Confluent wire format with
schema id ``100 * major + minor`` (v1.0 -> 100, v1.1 -> 101, ..., v1.3 -> 103), like Rubin's rule. Writers use
the version named in the record's ``schema_version`` (default: the latest shipped);
:func:`decode_classified` reads any shipped version and resolves it to the latest.

Where the service is configured with a schema registry, records are framed with the id the
registry gave the schema instead (``stream.output_registry``); :func:`decode_classified` then
takes a ``writer_schema`` callable (id -> schema definition, e.g. a registry lookup) for ids it
does not ship. This module stays pure: the HTTP lives in ``stream/``.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fastavro

import schemas
from schemas.alert import Alert, Exposure
from schemas.decode.avro import frame_wire, split_wire
from schemas.decode.errors import DecodeError, Reason
from schemas.projection import DETECTION_FIELDS, MJD_TIME_SCALE, item_fields, utc_mjd_to_tai
from schemas.provenance import ModelProvenance
from schemas.quality import quality_fields

__all__ = [
    "CLASSIFIED_VERSIONS",
    "LATEST_CLASSIFIED_VERSION",
    "CLASSIFIED_SCHEMA_HEADER",
    "classified_schema_id",
    "classification_fields",
    "unscored_reason",
    "build_classified_record",
    "encode_classified",
    "decode_classified",
    "classified_schema",
    "utc_mjd_to_tai",
    "MJD_TIME_SCALE",
]

FAMILY = "classified"
#: Every shipped version, (major, minor), oldest first.
CLASSIFIED_VERSIONS: tuple[tuple[int, int], ...] = tuple(schemas.available_versions(FAMILY))
LATEST_CLASSIFIED_VERSION: tuple[int, int] = CLASSIFIED_VERSIONS[-1]
#: The ``sc-schema`` header value of a record written by :func:`build_classified_record`.
CLASSIFIED_SCHEMA_HEADER = f"{FAMILY}/{LATEST_CLASSIFIED_VERSION[0]}.{LATEST_CLASSIFIED_VERSION[1]}"


def classified_schema_id(major: int, minor: int) -> int:
    return 100 * major + minor


# Parsed once at import: encode/decode run per record.
_PARSED: dict[int, Any] = {
    classified_schema_id(*v): fastavro.parse_schema(schemas.load_schema(FAMILY, *v)) for v in CLASSIFIED_VERSIONS
}
_VERSION_BY_ID: dict[int, tuple[int, int]] = {classified_schema_id(*v): v for v in CLASSIFIED_VERSIONS}
_LATEST_ID = classified_schema_id(*LATEST_CLASSIFIED_VERSION)
_VERSION_TEXT = {f"{a}.{b}": classified_schema_id(a, b) for a, b in CLASSIFIED_VERSIONS}


def classified_schema(version: tuple[int, int] = LATEST_CLASSIFIED_VERSION) -> dict:
    """The schema definition (JSON object) of a shipped version, as registered in a registry."""
    if version not in CLASSIFIED_VERSIONS:
        raise ValueError(f"classified v{version[0]}.{version[1]} is not shipped (have {CLASSIFIED_VERSIONS})")
    return schemas.load_schema(FAMILY, *version)


#: Registry schemas parsed once, keyed by their canonical JSON text.
_FETCHED: dict[str, Any] = {}


def _model_entry(provenance: ModelProvenance, scores: Mapping[str, float], survey: str) -> dict[str, Any]:
    return {
        "name": provenance.name,
        "version": provenance.version,
        "weights_sha256": provenance.weights_sha256,
        "backend": provenance.backend,
        "trained": bool(provenance.trained),
        "scores": {str(k): float(v) for k, v in scores.items()},
        "validated": provenance.validated_on(survey),                            # added in v1.3
    }


def unscored_reason(survey: str, unvalidated: Sequence[str]) -> str:
    """Why a record carries no score of a model validated on its survey (``unscored_reason``)."""
    reason = f"no model validated on survey {survey!r} scored this input"
    if unvalidated:
        reason += f"; scores of models not validated on it ({', '.join(unvalidated)}) are in models with validated = false"
    return reason


def classification_fields(
    item: Alert | Exposure,
    model_results: Sequence[tuple[ModelProvenance, Mapping[str, float]]],
) -> dict[str, Any]:
    """The classified record's fields that depend on the input and its scores alone (no Kafka
    source, no timestamps): what offline ``classify`` prints and the service publishes.

    Survey scope: a model's scores feed ``real_bogus`` and ``class_scores`` only where it was
    validated on the input's survey (its card's ``surveys``); a model the operator ran on
    another survey (``engine.run_unvalidated``) appears in ``models`` alone, with
    ``validated = false``. ``real_bogus`` is the ``"real"`` score of the first validated model
    whose card says ``real_bogus = true`` (named in ``real_bogus_model``). ``class_scores``
    holds the other validated models' class scores grouped per model, ``"<model>.<label>"``
    (v1.3; before, a first model's labels went in bare): a model whose provenance
    ``extra["class_scores"]`` maps labels to keys (its card's ``class_labels`` and
    ``class_prefix``) puts only those labels there: ACAI's five scores go in as
    ``acai.hosted`` .. ``acai.bogus``, alertclass's as ``alertclass.star`` ..; braai's
    real/bogus score and ACAI's drb-fill flag stay in ``models`` only. A record no validated model scored says why in ``unscored_reason`` and
    still carries the survey's own scores and ``quality``.
    """
    fields = item_fields(item)
    survey = fields["survey"]
    real_bogus: float | None = None
    real_bogus_model: str | None = None
    class_scores: dict[str, float] = {}
    models = []
    unvalidated = []
    for provenance, scores in model_results:
        entry = _model_entry(provenance, scores, survey)
        models.append(entry)
        if entry["validated"] is False:
            unvalidated.append(provenance.name)
            continue
        clean = entry["scores"]
        extra = getattr(provenance, "extra", None) or {}
        keys = extra.get("class_scores")
        if extra.get("real_bogus"):
            if real_bogus_model is None and "real" in clean:
                real_bogus, real_bogus_model = clean["real"], provenance.name
        else:
            keys = keys if keys is not None else {label: f"{provenance.name}.{label}" for label in clean}
            for label, key in keys.items():
                if label in clean:
                    class_scores[key] = clean[label]
    scored = len(models) > len(unvalidated)
    major, minor = LATEST_CLASSIFIED_VERSION
    return {
        "schema_version": f"{major}.{minor}",
        "survey": survey,
        "kind": fields["kind"],
        "alert_id": fields["alert_id"],
        "object_id": fields["object_id"],
        "ra": fields["ra"],
        "dec": fields["dec"],
        "mjd": fields["mjd"],
        "band": fields["band"],
        "real_bogus": real_bogus,
        "class_scores": class_scores,
        "models": models,
        "untrained": any(not m["trained"] for m in models),
        "real_bogus_model": real_bogus_model,                                     # added in v1.3
        "unscored_reason": None if scored else unscored_reason(survey, unvalidated),  # added in v1.3
        "quality": quality_fields(item),                                          # added in v1.3
        "survey_scores": fields["survey_scores"],
        "survey_score_versions": fields["survey_score_versions"],
        "mjd_time_scale": fields["mjd_time_scale"],                               # added in v1.2
        **{k: fields[k] for k in DETECTION_FIELDS},                               # added in v1.2
    }


def build_classified_record(
    item: Alert | Exposure,
    model_results: Sequence[tuple[ModelProvenance, Mapping[str, float]]],
    *,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    source_timestamp_ms: int,
    ingested_ms: int,
    classified_ms: int,
    classifier_version: str,
    processing_host: str | None = None,
) -> dict:
    """The output record (latest schema version) for one input and its models' scores:
    :func:`classification_fields` plus where the input came from and when it was scored."""
    return {
        **classification_fields(item, model_results),
        "source_topic": source_topic,
        "source_partition": int(source_partition),
        "source_offset": int(source_offset),
        "source_timestamp_ms": int(source_timestamp_ms),
        "ingested_ms": int(ingested_ms),
        "classified_ms": int(classified_ms),
        "classifier_version": classifier_version,
        "processing_host": processing_host,   # added in v1.1
    }


def encode_classified(record: Mapping[str, Any]) -> bytes:
    """Wire-framed Avro of ``record`` in the version its ``schema_version`` names.

    Raises ``ValueError`` for an unknown version or a record that does not fit the schema
    (our own bug, never the input's).
    """
    version = record.get("schema_version")
    schema_id = _VERSION_TEXT.get(version) if version is not None else _LATEST_ID
    if schema_id is None:
        raise ValueError(f"schema_version {version!r} is not shipped (have {sorted(_VERSION_TEXT)})")
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, _PARSED[schema_id], dict(record))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"record does not fit classified v{version}: {exc}") from exc
    return frame_wire(schema_id, out.getvalue())


def decode_classified(value: bytes, writer_schema: Callable[[int], Any] | None = None) -> dict:
    """A classified record of any shipped version, resolved to the latest schema.

    ``writer_schema(id)`` returns the schema definition of an id this module does not ship (a
    registry id); the callable should cache its answers, the parsed schema is cached here.
    """
    schema_id, payload = split_wire(value)
    writer = _PARSED.get(schema_id)
    if writer is None and writer_schema is not None:
        definition = writer_schema(schema_id)
        key = json.dumps(definition, sort_keys=True)
        if key not in _FETCHED:
            _FETCHED[key] = fastavro.parse_schema(definition)
        writer = _FETCHED[key]
    if writer is None:
        raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"classified schema id {schema_id} (not shipped; a registry id needs "
                                                    f"the registry URL)")
    stream = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(stream, writer, _PARSED[_LATEST_ID])
    except Exception as exc:
        raise DecodeError(Reason.TRUNCATED_AVRO, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(record, dict):   # the reader schema is a record: fastavro returns a dict
        raise DecodeError(Reason.TRUNCATED_AVRO, f"classified value decoded to {type(record).__name__}, not a record")
    return record
