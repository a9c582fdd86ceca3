"""The one walker: what it reads, what it skips, what it refuses (and never opens)."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.alert import Alert
from schemas.decode import DecodeError, Reason, decode_message
from schemas.walk import EntryKind, WalkLimits, walk, walk_decoded
from tests.hostile.corpus import container

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "schemas" / "samples"
ZTF = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))
POOL = REPO.parent / "shared" / "ztf_pool" / "alerts.parquet"
needs_pool = pytest.mark.skipif(not POOL.is_file(), reason="../shared/ztf_pool is not beside the repo")


def _reasons(entries) -> dict[str, str]:
    return {Path(e.source).name: e.error.reason.value for e in entries if e.error is not None}


def test_bundled_samples_walk_to_84_alerts_and_documentation_is_skipped():
    results = [r for _, _, r in walk_decoded([SAMPLES])]
    assert len(results) == 84 and all(isinstance(r, Alert) for r in results)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_devices_fifos_and_links_to_them_are_refused_unread(tmp_path):
    os.mkfifo(tmp_path / "fifo.avro")  # opening it for reading would block forever
    (tmp_path / "zero.avro").symlink_to("/dev/zero")
    (tmp_path / "dangling.avro").symlink_to(tmp_path / "nowhere")
    shutil.copy(ZTF[0], tmp_path / "good.avro")
    (tmp_path / "link-to-good.avro").symlink_to(tmp_path / "good.avro")
    entries = list(walk([tmp_path, Path("/dev/zero")]))
    assert _reasons(entries) == {"fifo.avro": "not_a_regular_file", "zero.avro": "not_a_regular_file",
                                 "dangling.avro": "not_a_regular_file", "zero": "not_a_regular_file"}
    good = [e for e in entries if e.error is None]
    assert [Path(e.source).name for e in good] == ["good.avro", "link-to-good.avro"]
    assert all(e.value == ZTF[0].read_bytes() for e in good)


def test_sizes_are_capped_before_reading(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x00" * 300_000)
    archive = tmp_path / "night.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("huge.avro")
        info.size = 64_000_000
        tar.addfile(info, io.BytesIO(b"\x00" * info.size))
        tar.add(ZTF[0], arcname="ok.avro")
    limits = WalkLimits(max_file_bytes=200_000)
    tracemalloc.start()
    entries = list(walk([big, archive], limits=limits))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(e.source.rsplit("/", 1)[-1], e.error.reason.value if e.error else None) for e in entries] == [
        ("big.bin", "too_large"), ("night.tar.gz!huge.avro", "too_large"), ("night.tar.gz!ok.avro", None)]
    # the 64 MB member was refused from its header and never held; skipping past it inflates the
    # gzip stream in constant memory (one buffer: tarfile's read size times the deflate ratio)
    assert peak < 32_000_000


def test_empty_and_multi_record_containers(tmp_path):
    import fastavro

    with ZTF[0].open("rb") as fh:
        reader = fastavro.reader(fh)
        schema = reader.writer_schema
        records = [next(reader)]
    records += [dict(records[0], candid=records[0]["candid"] + 1)]
    datums = []
    for record in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
        datums.append(buf.getvalue())
    (tmp_path / "part-00000.avro").write_bytes(container(schema, []))
    (tmp_path / "part-00001.avro").write_bytes(container(schema, [(2, b"".join(datums))]))
    entries = list(walk([tmp_path]))
    assert [e.origin.rsplit("/", 1)[-1] for e in entries] == ["part-00001.avro#0", "part-00001.avro#1"]
    assert [decode_message(e.value)[0].alert_id for e in entries] == [r["candid"] for r in records]
    assert all(e.kind == EntryKind.CONTAINER and datum in e.value for e, datum in zip(entries, datums, strict=True))
    proc = subprocess.run([sys.executable, "-m", "stream.commands.inspect", str(tmp_path / "part-00000.avro")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr  # zero records is zero alerts, not an error


@needs_pool
def test_parquet_rows_encode_to_containers_that_decode_like_the_rows():
    from schemas.decode.parquet import iter_parquet

    direct = [r for _, r in iter_parquet(POOL, row_groups=[0], limit=40)]
    encoded = []
    for entry in walk([POOL]):
        encoded.append(entry)
        if len(encoded) == len(direct):
            break
    assert [e.origin for e in encoded] == [f"{POOL}#{i}" for i in range(len(direct))]
    for entry, want in zip(encoded, direct, strict=True):
        (got,) = decode_message(entry.value)
        assert (got.alert_id, got.object_id, got.mjd, got.band) == (want.alert_id, want.object_id, want.mjd, want.band)
        assert dict(got.candidate) == dict(want.candidate)
        assert np.array_equal(got.science.data, want.science.data, equal_nan=True) and got.survey_scores == want.survey_scores


@needs_pool
def test_parquet_through_inspect(tmp_path):
    import pyarrow.parquet as pq

    small = tmp_path / "dump.parquet"
    pq.write_table(pq.ParquetFile(POOL).read_row_group(0).slice(0, 200), small, row_group_size=64)
    proc = subprocess.run([sys.executable, "-m", "stream.commands.inspect", str(small)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    import json

    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr
    assert lines[-1] == {"summary": True, "files": 1, "decoded": 200, "failed": 0, "reasons": {}}
    assert [line["index"] for line in lines[:-1]] == list(range(200))


def test_bad_parquet_rows_get_typed_reasons(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pa.table({"objectId": ["ZTF1", "ZTF2"], "candid": [1, 2],
                     "candidate": [{"ra": 1.0, "dec": 2.0, "jd": 2459000.5, "fid": 1}, None],
                     "cutoutScience": [{"stampData": b"junk"}, None], "cutoutTemplate": [None, None],
                     "cutoutDifference": [None, None]})
    path = tmp_path / "bad.parquet"
    pq.write_table(rows, path)
    decoded = [(i, r.reason.value) for _, i, r in walk_decoded([path]) if isinstance(r, DecodeError)]
    encoded = []
    for entry in walk([path]):
        try:
            decode_message(entry.value)
        except DecodeError as exc:
            encoded.append((entry.index, exc.reason.value))
    assert decoded == encoded == [(0, Reason.NOT_FITS.value), (1, Reason.MISSING_FIELD.value)]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_inspect_and_replay_refuse_special_files_without_hanging(tmp_path):
    import json

    from stream.replay.sources import SourceMessage, Unreadable, iter_source

    os.mkfifo(tmp_path / "fifo.avro")
    (tmp_path / "zero.avro").symlink_to("/dev/zero")
    shutil.copy(ZTF[0], tmp_path / "good.avro")
    proc = subprocess.run([sys.executable, "-m", "stream.commands.inspect", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert lines[-1]["decoded"] == 1 and lines[-1]["reasons"] == {"not_a_regular_file": 2}
    items = list(iter_source(tmp_path))
    assert [type(i) for i in items] == [Unreadable, SourceMessage, Unreadable]
    assert all(i.reason.startswith("not_a_regular_file") for i in items if isinstance(i, Unreadable))


def _walk_fuzz_bases() -> list[tuple[str, bytes]]:
    import fastavro

    schema, records = None, []
    for path in sorted((SAMPLES / "rubin" / "fink" / "v7_4").glob("*.avro"))[:4]:
        with path.open("rb") as fh:
            reader = fastavro.reader(fh)
            schema = schema or reader.writer_schema
            records += list(reader)
    multi = io.BytesIO()
    fastavro.writer(multi, schema, records, codec="deflate", sync_interval=1000)  # several blocks
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for path in ZTF[:3]:
            tar.add(path, arcname=path.name)
    return [("part.avro", multi.getvalue()), ("night.tar.gz", archive.getvalue())]


WALK_BASES = _walk_fuzz_bases()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(base=st.integers(0, len(WALK_BASES) - 1),
       ops=st.lists(st.tuples(st.sampled_from(["flip", "cut", "smear"]), st.floats(0, 1, exclude_max=True),
                              st.integers(0, 255)), min_size=1, max_size=3))
def test_mutated_files_walk_to_alerts_or_typed_reasons(tmp_path, base, ops):
    name, value = WALK_BASES[base]
    data = bytearray(value)
    for kind, where, arg in ops:
        if not data:
            break
        pos = int(where * len(data))
        if kind == "flip":
            data[pos] ^= 1 << (arg % 8)
        elif kind == "cut":
            del data[pos:]
        else:
            data[pos:pos + 8] = bytes([arg]) * 8
    path = tmp_path / name
    path.write_bytes(bytes(data))
    for _, _, result in walk_decoded([path]):  # never raises: every outcome is an item or a reason
        assert isinstance(result, (Alert, DecodeError))


@needs_pool
def test_a_brokers_columns_beside_ztfs_are_left_out_of_the_packet_replay_sends(tmp_path):
    """A Fink ZTF dump carries cross-match and classifier columns (one a map of structs, with no
    Avro form); each row is sent as ZTF's own fields and still decodes like the row."""
    import io

    import fastavro
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(POOL).slice(0, 3)
    extra = pa.array([[("snn", {"score": 0.1})]] * 3, type=pa.map_(pa.string(), pa.struct([("score", pa.float64())])))
    table = table.append_column("cdsxmatch", pa.array(["Unknown"] * 3)).append_column("lc_features", extra)
    dump = tmp_path / "fink-ztf.parquet"
    pq.write_table(table, dump)
    entries = list(walk([dump]))
    assert len(entries) == 3 and all(e.error is None for e in entries)
    writer = fastavro.reader(io.BytesIO(entries[0].value)).writer_schema
    assert {f["name"] for f in writer["fields"]} == set(table.column_names) - {"cdsxmatch", "lc_features"}
    assert [decode_message(e.value)[0].alert_id for e in entries] == [int(c) for c in table.column("candid").to_pylist()]
