"""Replay sources read every bundled real packet in every source form (no services needed)."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import fastavro
import pytest

from schemas.classified_record import decode_classified
from schemas.decode import decode_message
from schemas.walk import WalkLimits
from stream.replay.sources import ReplaySourceError, SourceKind, SourceMessage, Unreadable, iter_source
from tests.stream.subscribe.helpers import SAMPLES, classified_records

PACKETS = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.name not in ("LICENSE", "README.md"))


def _messages(items):
    return [i for i in items if isinstance(i, SourceMessage)]


def test_directory_reads_every_bundled_packet_unchanged():
    items = list(iter_source(SAMPLES))
    assert [i for i in items if isinstance(i, Unreadable)] == []
    messages = _messages(items)
    assert len(messages) == len(PACKETS) == 84
    # one-alert files are sent byte for byte
    assert sorted(m.value for m in messages) == sorted(p.read_bytes() for p in PACKETS)
    for m in messages:
        alert = decode_message(m.value)[0]
        assert alert.alert_id == m.alert_id
        assert alert.object_id == m.object_id
        assert m.observed_mjd == pytest.approx(alert.mjd, abs=1e-6)
        assert m.survey == alert.survey
    kinds = {m.kind for m in messages}
    assert kinds == {SourceKind.CONTAINER, SourceKind.WIRE}


def test_tar_gz_streams_members_in_archive_order(tmp_path):
    archive = tmp_path / "night.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in PACKETS:
            tar.add(p, arcname=str(p.relative_to(SAMPLES)))
    messages = _messages(iter_source(archive))
    assert [m.value for m in messages] == [p.read_bytes() for p in PACKETS]
    assert messages[0].origin == f"{archive}!{PACKETS[0].relative_to(SAMPLES)}"


def test_kind_is_detected_by_content_not_name(tmp_path):
    ztf = SAMPLES / "ztf" / "alerce" / "3044341005815015012.avro"
    wire = SAMPLES / "rubin" / "alerce-kafka" / "message_0.avro"
    shutil.copy(ztf, tmp_path / "a.bin")
    shutil.copy(wire, tmp_path / "b.dat")
    got = {Path(m.origin).name: m for m in _messages(iter_source(tmp_path))}
    assert got["a.bin"].kind == SourceKind.CONTAINER and got["a.bin"].survey == "ztf"
    assert got["b.dat"].kind == SourceKind.WIRE and got["b.dat"].wire_schema_id == 704
    assert got["b.dat"].object_id is not None


def _spark_part_file(path: Path, folder: Path) -> list[dict]:
    """A multi-record container like a Spark part file, from the real packets of one folder."""
    schema, records = None, []
    for p in sorted(folder.glob("*.avro")):
        with p.open("rb") as fh:
            reader = fastavro.reader(fh)
            schema = schema or reader.writer_schema
            records.extend(reader)
    with path.open("wb") as fh:
        fastavro.writer(fh, schema, records, codec="deflate")
    return records


@pytest.mark.parametrize("streamed", [False, True])
def test_multi_record_container_becomes_one_message_per_record(tmp_path, streamed):
    # streamed: the large-file path, read block by block, never whole
    limits = WalkLimits(max_file_bytes=0) if streamed else None
    folder = SAMPLES / "rubin" / "fink" / "v7_4"
    records = _spark_part_file(tmp_path / "part-00000.avro", folder)
    messages = _messages(iter_source(tmp_path / "part-00000.avro", limits=limits))
    assert len(messages) == len(records) == 10
    for i, (m, rec) in enumerate(zip(messages, records)):
        assert m.origin.endswith(f"#{i}")
        with io.BytesIO(m.value) as fh:
            reader = fastavro.reader(fh)
            assert reader.codec == "null"  # a one-record container around the record's original bytes
            assert [r["alertId"] for r in reader] == [rec["alertId"]]
        assert decode_message(m.value)[0].alert_id == rec["alertId"] == m.alert_id


def test_wire_directory_payloads_sent_unchanged():
    folder = SAMPLES / "rubin" / "alerce-kafka"
    messages = _messages(iter_source(folder))
    assert [m.value for m in messages] == [p.read_bytes() for p in sorted(folder.glob("*.avro"))]
    assert all(m.kind == SourceKind.WIRE and m.survey == "rubin" for m in messages)


def test_unreadable_files_are_listed_with_reasons(tmp_path):
    good = SAMPLES / "ztf" / "alerce" / "3044341005815015012.avro"
    shutil.copy(good, tmp_path / "0-good.avro")
    (tmp_path / "1-empty.avro").write_bytes(b"")
    (tmp_path / "2-junk.avro").write_bytes(b"GIF89a not an alert")
    (tmp_path / "3-truncated.avro").write_bytes(good.read_bytes()[:5000])
    (tmp_path / "4-wire-unknown-id.bin").write_bytes(b"\x00\x00\x00\x00\x05" + b"\x02" * 40)
    items = list(iter_source(tmp_path))
    assert len(_messages(items)) == 1
    bad = {Path(u.origin.split("#")[0]).name: u.reason for u in items if isinstance(u, Unreadable)}
    assert set(bad) == {"1-empty.avro", "2-junk.avro", "3-truncated.avro", "4-wire-unknown-id.bin"}
    assert "empty" in bad["1-empty.avro"]
    assert "unknown format" in bad["2-junk.avro"]
    assert "schema id 5" in bad["4-wire-unknown-id.bin"]


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(ReplaySourceError):
        list(iter_source(tmp_path / "nope"))


def test_subscribe_dumps_are_re_encoded(tmp_path):
    records = classified_records()[:6]
    jsonl = tmp_path / "dump.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n{broken\n")
    items = list(iter_source(jsonl))
    messages = _messages(items)
    assert [decode_classified(m.value) for m in messages] == records
    assert all(m.kind == SourceKind.CLASSIFIED_JSONL and m.survey == "classified" for m in messages)
    assert [u.origin for u in items if isinstance(u, Unreadable)] == [f"{jsonl}:8"]

    import schemas
    schema = fastavro.parse_schema(schemas.load_schema("classified", *schemas.latest_version("classified")))
    avro = tmp_path / "dump.avro"
    with avro.open("wb") as fh:
        fastavro.writer(fh, schema, records)
    messages = _messages(iter_source(avro))
    assert [m.kind for m in messages] == [SourceKind.CLASSIFIED_AVRO] * 6
    assert [decode_classified(m.value) for m in messages] == records
    assert [m.object_id for m in messages] == [r["object_id"] for r in records]


POOL = Path(__file__).resolve().parents[3].parent / "shared" / "ztf_pool" / "alerts.parquet"


@pytest.mark.integration
@pytest.mark.skipif(not POOL.is_file(), reason="../shared/ztf_pool is not beside the repo")
def test_parquet_dump_replays_onto_a_topic_as_decodable_ztf_packets(services, unique_name, tmp_path):
    import pyarrow.parquet as pq

    from stream.replay.publish import replay
    from tests.stream.subscribe.helpers import consume_all

    rows = pq.ParquetFile(POOL).read_row_group(1).slice(0, 40)
    dump = tmp_path / "dump.parquet"
    pq.write_table(rows, dump, row_group_size=16)
    topic = f"{unique_name}-alerts"
    summary = replay(dump, topic, bootstrap_servers=services.bootstrap_servers, partitions=2, progress=False)
    assert summary.sent == 40 and summary.unreadable == []
    messages = consume_all(services.bootstrap_servers, topic)
    alerts = {decode_message(m.value())[0].alert_id: m.key() for m in messages}
    assert alerts == {r["candid"]: r["objectId"].encode() for r in rows.select(["candid", "objectId"]).to_pylist()}
