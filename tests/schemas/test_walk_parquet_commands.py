"""Fink-style Parquet dumps through replay, stamps and the ZTF training loader (the walker's users).

Run on a small dump cut from ``../shared/ztf_pool/alerts.parquet`` (skipped when ../shared is absent).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.decode import decode_message

REPO = Path(__file__).resolve().parents[2]
POOL = REPO.parent / "shared" / "ztf_pool" / "alerts.parquet"
pytestmark = pytest.mark.skipif(not POOL.is_file(), reason="../shared/ztf_pool is not beside the repo")
ROWS = 60


@pytest.fixture(scope="module")
def small_dump(tmp_path_factory) -> tuple[Path, list[dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pool = pq.ParquetFile(POOL)  # old alerts (no drb) and recent ones (with drb)
    last = pool.metadata.num_row_groups - 1
    table = pa.concat_tables([pool.read_row_group(0).slice(0, ROWS // 2), pool.read_row_group(last).slice(0, ROWS // 2)])
    path = tmp_path_factory.mktemp("dump") / "alerts.parquet"
    pq.write_table(table, path, row_group_size=25)
    return path, table.select(["candid", "objectId"]).to_pylist()


def test_replay_source_publishes_each_row_as_a_ztf_container(small_dump):
    from stream.replay.rewrite import make_copy
    from stream.replay.sources import SourceKind, SourceMessage, count_hint, iter_source

    path, rows = small_dump
    messages = list(iter_source(path))
    assert all(isinstance(m, SourceMessage) for m in messages) and count_hint(path) == len(rows)
    assert [(m.alert_id, m.object_id) for m in messages] == [(r["candid"], r["objectId"]) for r in rows]
    assert {m.kind for m in messages} == {SourceKind.CONTAINER} and {m.survey for m in messages} == {"ztf"}
    assert [decode_message(m.value)[0].alert_id for m in messages] == [r["candid"] for r in rows]
    copy = make_copy(messages[0], 3)  # --multiply splices a fresh id into the encoded row
    assert decode_message(copy.value)[0].alert_id == copy.alert_id != messages[0].alert_id


def test_stamps_command_reads_the_dump(small_dump, tmp_path):
    path, rows = small_dump
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "stamps", str(path), "--out", str(tmp_path / "set"),
                           "--label-score", "rb"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["undecodable"] == 0
    assert summary["written"] + summary["unlabelled"] == len(rows) and summary["written"] > 0
    assert len(list((tmp_path / "set").rglob("*.fits"))) == summary["written"]


def test_ztf_training_split_reads_the_dump(small_dump):
    from engines.training.ztf_files import split_ztf_alerts

    path, rows = small_dump
    split = split_ztf_alerts(path)
    checks = {a.alert_id for a in split.checks}
    assert checks | {a.alert_id for a in split.bases} <= {r["candid"] for r in rows}
    assert len(split.checks) == sum(1 for a in split.checks if "drb" in a.survey_scores) > 0
    assert not {a.object_id for a in split.checks} & {a.object_id for a in split.bases}
    assert set(split.fwhm_by_alert_id) >= checks
