"""The history skipper (schemas/decode/skip.py): a record read with its history arrays skipped
fast is the record fastavro reads through the projection, on real Rubin packets; anything the
fast path cannot describe, or a broken record, goes the usual way with the usual error."""
from __future__ import annotations

import io
import itertools
import math
import random
import struct
from pathlib import Path

import fastavro
import pytest

from schemas.decode import avro
from schemas.decode.avro import ContainerReader, Projection, read_schemaless, split_wire
from schemas.decode.errors import DecodeError
from schemas.decode.message import decode_message
from schemas.decode.rubin import SchemaResolver
from schemas.decode.skip import MAX_SHORT_BYTES, compile_skipper, item_pattern
from tests.schemas.decode.packets import SAMPLES

SHARED = Path(__file__).resolve().parents[4] / "shared"
#: Fink's data-transfer dump of 2026-03-09: real LSSTCam alerts with a year of history each.
WITH_HISTORY = SHARED / "rubin_pool" / "fink-tutorials"


def _records(value: bytes, *, fast: bool) -> list:
    """The records of one message, read with the skipper (``fast``) or through the projection alone."""
    if value[:4] == b"Obj\x01":
        container = ContainerReader(io.BytesIO(value), max_block_bytes=1 << 26)
        if not fast:
            container._projection = Projection(container.schema.projection.reader)
        return list(container.records())
    schema_id, payload = split_wire(value)
    parsed, how, _ = SchemaResolver().resolve(schema_id)
    return [read_schemaless(payload, parsed, how if fast else Projection(how.reader))]


def _real_messages() -> list[bytes]:
    """Every real ZTF and Rubin packet here, and a dozen LSSTCam alerts with a year of history."""
    values = [p.read_bytes() for root in (SAMPLES, SHARED / "data") for survey in ("ztf", "rubin")
              for p in sorted((root / survey).rglob("*.avro"))]
    if WITH_HISTORY.is_dir():
        from stream.replay.sources import SourceMessage, iter_source

        values += [m.value for m in itertools.islice((m for m in iter_source(WITH_HISTORY) if isinstance(m, SourceMessage)), 12)]
    return values


def test_real_packets_read_the_same_with_their_history_skipped_fast(monkeypatch) -> None:
    """ZTF's ``prv_candidates`` (file names of ~100 characters among them) and Rubin's histories."""
    values = _real_messages()
    took: list[bool] = []
    real_read_runs = avro._read_runs

    def counted(*args):
        record = real_read_runs(*args)
        took.append(record is not None)
        return record

    monkeypatch.setattr(avro, "_read_runs", counted)
    histories = 0
    for value in values:
        fast, usual = _records(value, fast=True), _records(value, fast=False)
        assert repr(fast) == repr(usual)      # repr: NaN equals NaN
        assert [list(r) for r in fast] == [list(r) for r in usual]
        full = fastavro.reader(io.BytesIO(value)) if value[:4] == b"Obj\x01" else None
        if full is not None:
            histories += sum(bool(r.get("prvDiaSources") or r.get("prv_candidates")) for r in full)
    assert took and all(took), "every schema here has history arrays the skipper describes, and every item fits"
    if WITH_HISTORY.is_dir():
        assert len(values) >= 12 + 36 + 200
    assert histories > 0, "some containers here carry a history"


def test_a_year_of_history_is_skipped_not_read() -> None:
    """The 2026-03 packets hold hundreds of history items; the record keeps none of them."""
    if not WITH_HISTORY.is_dir():
        pytest.skip(f"{WITH_HISTORY} not found beside the repo")
    from stream.replay.sources import SourceMessage, iter_source

    value = next(m.value for m in iter_source(WITH_HISTORY) if isinstance(m, SourceMessage))
    schema_id, payload = split_wire(value)
    parsed, how, _ = SchemaResolver().resolve(schema_id)
    whole = fastavro.schemaless_reader(io.BytesIO(payload), parsed)
    assert len(whole["prvDiaSources"]) + len(whole["prvDiaForcedSources"]) > 100
    record = read_schemaless(payload, parsed, how)
    assert "prvDiaSources" not in record and record["diaSource"]["diaSourceId"] == whole["diaSource"]["diaSourceId"]
    assert record["cutoutDifference"] == whole["cutoutDifference"]


ITEM = {"type": "record", "name": "item", "fields": [
    {"name": "id", "type": "long"}, {"name": "n", "type": "int"}, {"name": "ok", "type": "boolean"},
    {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "band", "type": ["null", "string"]},
    {"name": "blob", "type": "bytes"}, {"name": "flux", "type": ["null", "double"]},
    {"name": "kind", "type": {"type": "enum", "name": "kind", "symbols": ["a", "b", "c"]}},
    {"name": "tag", "type": {"type": "fixed", "name": "tag", "size": 3}},
    {"name": "inner", "type": {"type": "record", "name": "inner", "fields": [{"name": "x", "type": ["null", "long", "double"]}]}},
    {"name": "again", "type": "inner"},
]}
RECORD = {"type": "record", "name": "alert", "fields": [
    {"name": "diaSourceId", "type": "long"},
    {"name": "diaSource", "type": {"type": "record", "name": "src", "fields": [{"name": "ra", "type": "double"}]}},
    {"name": "prvDiaSources", "type": ["null", {"type": "array", "items": ITEM}]},
    {"name": "prvDiaForcedSources", "type": {"type": "array", "items": "item"}},
    {"name": "cutoutDifference", "type": ["null", "bytes"]},
]}


def _item(rng: random.Random, *, text: int | None = None) -> dict:
    return {"id": rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randrange(-2**40, 2**40)]),
            "n": rng.choice([0, 2**31 - 1, -(2**31), rng.randrange(-1000, 1000)]), "ok": rng.random() < 0.5,
            "f": rng.choice([0.0, math.nan, -1.5e30]), "d": rng.choice([math.inf, 1e-300, math.nan, 3.0]),
            "band": rng.choice([None, "", "g", "r" * (text if text is not None else rng.randrange(MAX_SHORT_BYTES + 1))]),
            "blob": bytes(rng.randrange(256) for _ in range(rng.randrange(10))), "flux": rng.choice([None, 1.0, math.nan]),
            "kind": rng.choice("abc"), "tag": bytes([10, 128, 255]), "inner": {"x": rng.choice([None, -7, 2.5])},
            "again": {"x": None}}


def _encode(record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(RECORD), record)
    return out.getvalue()


def test_the_item_pattern_matches_exactly_one_encoded_value_of_every_supported_type() -> None:
    rng = random.Random(7)
    parsed = fastavro.parse_schema(RECORD)
    how = avro.projection(RECORD)
    assert how.runs is not None and sum(not isinstance(p, tuple) for p in how.runs) == 2
    for _ in range(60):
        record = {"diaSourceId": rng.randrange(2**50), "diaSource": {"ra": 1.5},
                  "prvDiaSources": rng.choice([None, [], [_item(rng) for _ in range(rng.randrange(1, 30))]]),
                  "prvDiaForcedSources": [_item(rng) for _ in range(rng.randrange(0, 30))], "cutoutDifference": b"FITS"}
        payload = _encode(record)
        stream = io.BytesIO(payload)
        fast = avro._read_runs(how.runs, payload, stream)
        assert fast == {"diaSourceId": record["diaSourceId"], "diaSource": {"ra": 1.5}, "cutoutDifference": b"FITS"}
        assert stream.tell() == len(payload)
        assert read_schemaless(payload, parsed, how) == fast


def test_what_the_pattern_cannot_describe_goes_the_usual_way() -> None:
    """A string longer than MAX_SHORT_BYTES, a nested array: the skipper says it cannot tell
    (None), and the record is read the usual way, with the same result."""
    rng = random.Random(3)
    parsed, how = fastavro.parse_schema(RECORD), avro.projection(RECORD)
    record = {"diaSourceId": 5, "diaSource": {"ra": 2.0}, "prvDiaSources": [_item(rng, text=MAX_SHORT_BYTES + 1)],
              "prvDiaForcedSources": [], "cutoutDifference": None}
    payload = _encode(record)
    assert avro._read_runs(how.runs, payload, io.BytesIO(payload)) is None
    before = avro.slow_history_reads()
    assert read_schemaless(payload, parsed, how) == {"diaSourceId": 5, "diaSource": {"ra": 2.0}, "cutoutDifference": None}
    assert avro.slow_history_reads() == before + 1   # counted: the service exports it (sc_decode_history_slow_reads_total)
    short = _encode({**record, "prvDiaSources": [_item(rng, text=3)]})
    read_schemaless(short, parsed, how)
    assert avro.slow_history_reads() == before + 1   # the fast path counts nothing
    nested = {"type": "array", "items": {"type": "record", "name": "x", "fields": [{"name": "a", "type": {"type": "array", "items": "long"}}]}}
    assert compile_skipper(nested, {}) is None
    assert item_pattern({"type": "map", "values": "long"}, {}) is None
    assert compile_skipper({"type": "array", "items": "null"}, {}) is None   # zero-size items: never matched


def test_a_block_that_gives_its_size_is_skipped_item_by_item() -> None:
    """Writers may send a negative block count followed by the block's size in bytes (the spec's
    way to skip fast); the skipper still matches each item."""
    rng = random.Random(11)
    items = [_item(rng) for _ in range(5)]
    item_schema = fastavro.parse_schema(ITEM)
    encoded = io.BytesIO()
    for item in items:
        fastavro.schemaless_writer(encoded, item_schema, item)
    block = encoded.getvalue()
    sized = (avro.encode_long(1) + struct.pack("<d", 0.5)                                   # diaSourceId, diaSource
             + avro.encode_long(1) + avro.encode_long(-5) + avro.encode_long(len(block)) + block + avro.encode_long(0)
             + avro.encode_long(0)                                                          # prvDiaForcedSources: []
             + avro.encode_long(1) + avro.encode_long(1) + b"x")                            # cutoutDifference
    parsed, how = fastavro.parse_schema(RECORD), avro.projection(RECORD)
    assert [i["id"] for i in fastavro.schemaless_reader(io.BytesIO(sized), parsed)["prvDiaSources"]] == [i["id"] for i in items]
    assert avro._read_runs(how.runs, sized, io.BytesIO(sized)) == {"diaSourceId": 1, "diaSource": {"ra": 0.5},
                                                                   "cutoutDifference": b"x"}


@pytest.mark.parametrize("damage", ["truncated in the history", "a block count of 2**62", "a union branch of 7"])
def test_a_broken_history_gives_the_error_it_gave_before(damage: str) -> None:
    rng = random.Random(5)
    record = {"diaSourceId": 9, "diaSource": {"ra": 1.0}, "prvDiaSources": [_item(rng) for _ in range(20)],
              "prvDiaForcedSources": [], "cutoutDifference": b"x"}
    payload = _encode(record)
    head = len(avro.encode_long(9)) + 8
    if damage == "truncated in the history":
        payload = payload[:len(payload) // 2]
    elif damage == "a block count of 2**62":
        payload = payload[:head + 1] + avro.encode_long(2**62) + payload[head + 2:]
    else:
        payload = payload[:head] + avro.encode_long(7) + payload[head + 1:]
    parsed, how = fastavro.parse_schema(RECORD), avro.projection(RECORD)
    with pytest.raises(DecodeError) as fast:
        read_schemaless(payload, parsed, how)
    with pytest.raises(DecodeError) as usual:
        read_schemaless(payload, parsed, Projection(how.reader))
    assert (fast.value.reason, str(fast.value)) == (usual.value.reason, str(usual.value))


def test_a_real_packet_cut_short_in_its_history_is_dead_lettered_as_before() -> None:
    if not WITH_HISTORY.is_dir():
        pytest.skip(f"{WITH_HISTORY} not found beside the repo")
    from stream.replay.sources import SourceMessage, iter_source

    value = next(m.value for m in iter_source(WITH_HISTORY) if isinstance(m, SourceMessage))
    cut = value[:len(value) // 3]
    with pytest.raises(DecodeError) as fast:
        decode_message(cut)
    schema_id, payload = split_wire(cut)
    parsed, how, _ = SchemaResolver().resolve(schema_id)
    with pytest.raises(DecodeError) as usual:
        read_schemaless(payload, parsed, Projection(how.reader))
    assert fast.value.reason == usual.value.reason


def test_a_schema_whose_history_no_skipper_describes_counts_every_record() -> None:
    """A history of maps: no skipper compiles, so each record reads it whole, and each is counted."""
    schema = {"type": "record", "name": "alert", "fields": [
        {"name": "diaSourceId", "type": "long"},
        {"name": "prvDiaSources", "type": {"type": "array", "items": {"type": "map", "values": "long"}}}]}
    parsed, how = fastavro.parse_schema(schema), avro.projection(schema)
    assert how.history and how.runs is None
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, {"diaSourceId": 1, "prvDiaSources": [{"a": 1}]})
    before = avro.slow_history_reads()
    assert read_schemaless(out.getvalue(), parsed, how) == {"diaSourceId": 1}
    assert avro.slow_history_reads() == before + 1
    no_history = {"type": "record", "name": "alert", "fields": [{"name": "diaSourceId", "type": "long"}, {"name": "note", "type": "string"}]}
    assert not avro.projection(no_history).history
