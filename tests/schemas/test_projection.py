"""The one JSON projection of a decoded input: the fields the classified record, ``classify`` and
``inspect`` share, on real bundled packets and a synthetic exposure."""
from __future__ import annotations

import json
import math

import numpy as np

from schemas.alert import Exposure, InputKind
from schemas.classified_record import build_classified_record
from schemas.decode import decode_message
from schemas.projection import describe_item, item_fields, json_ready
from tests.conftest import SAMPLES


def _alerts() -> list:
    paths = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:2] + sorted((SAMPLES / "rubin").rglob("*.avro"))[:2]
    return [decode_message(p.read_bytes())[0] for p in paths]


def test_item_fields_are_the_records_fields_with_alert_id_as_a_string():
    for alert in _alerts():
        fields = item_fields(alert)
        assert fields["alert_id"] == str(alert.alert_id) and isinstance(fields["alert_id"], str)
        record = build_classified_record(alert, [], source_topic="t", source_partition=0, source_offset=0,
                                         source_timestamp_ms=0, ingested_ms=0, classified_ms=0, classifier_version="x")
        assert {k: record[k] for k in fields} == fields


def test_describe_item_is_json_and_names_the_stamp_shapes():
    for alert in _alerts():
        described = json_ready(describe_item(alert))
        assert json.loads(json.dumps(described, allow_nan=False)) == described
        assert described["stamps"]["science"] == list(alert.science.shape)
        assert described["schema_version"] == alert.schema_version


def test_exposures_use_their_exposure_id_and_filter_and_non_finite_numbers_become_null():
    exposure = Exposure("j8xi01x1q", "ACS/WFC", "F606W", 500.0, 60000.0, InputKind.RAW_EXPOSURE,
                        {"SCI,1": np.zeros((4, 6), np.float32)}, ra=float("nan"))
    fields = item_fields(exposure)
    assert (fields["alert_id"], fields["band"], fields["kind"], fields["ra"]) == ("j8xi01x1q", "F606W", "raw_exposure", None)
    assert describe_item(exposure)["images"] == {"SCI,1": [4, 6]}
    assert json_ready({"a": [math.inf, 1.0], "b": float("nan")}) == {"a": [None, 1.0], "b": None}
