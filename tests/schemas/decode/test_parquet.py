"""Fink-style Parquet alert dumps: real rows decode like packets; bad files get a typed reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from schemas.alert import Alert
from schemas.decode import Reason
from schemas.decode.parquet import is_parquet, iter_parquet, parquet_row_count

POOL = Path(__file__).resolve().parents[3].parent / "shared" / "ztf_pool" / "alerts.parquet"
needs_pool = pytest.mark.skipif(not POOL.is_file(), reason="../shared/ztf_pool is not beside the repo")


@needs_pool
def test_pool_rows_decode_to_alerts_with_their_candidate_fields():
    import pyarrow.parquet as pq

    expected = pq.ParquetFile(POOL).read_row_group(0, columns=["candid", "objectId"]).to_pylist()
    rows = list(iter_parquet(POOL, row_groups=[0]))
    assert [i for i, _ in rows] == list(range(len(expected)))
    for (_, alert), want in zip(rows, expected, strict=True):
        assert isinstance(alert, Alert)
        assert (alert.alert_id, alert.object_id) == (want["candid"], want["objectId"])
        assert alert.candidate["candid"] == want["candid"] and "magpsf" in alert.candidate
        assert alert.science.data.ndim == 2


@needs_pool
def test_limit_and_row_count_read_only_what_is_asked():
    assert parquet_row_count(POOL) == 2075
    assert len(list(iter_parquet(POOL, limit=5))) == 5
    assert is_parquet(POOL.read_bytes()[:4])


def test_unreadable_file_is_one_typed_error(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1" + b"\x00" * 64)
    ((index, error),) = list(iter_parquet(bad))
    assert index == 0 and error.reason is Reason.UNKNOWN_FORMAT
