"""``survey-classifier inspect`` run as a subprocess on directories, files and a tarball."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile

from tests.schemas.decode.packets import REPO, SAMPLES


def _inspect(*args: str, module: str = "stream.commands.inspect") -> tuple[int, list[dict]]:
    cmd = [sys.executable, "-m", module, *(["inspect"] if module == "stream.cli" else []), *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, lines


def test_inspect_bundled_directory():
    rc, lines = _inspect(str(SAMPLES))
    assert rc == 0
    *records, summary = lines
    assert summary == {"summary": True, "files": 84, "decoded": 84, "failed": 0, "reasons": {}}
    assert {r["survey"] for r in records} == {"ztf", "rubin"}
    wire = next(r for r in records if r["file"].endswith("alerce-kafka/message_0.avro"))
    assert wire["schema_version"] == "lsst.v7_4" and wire["stamps"]["science"] == [30, 30]
    assert "reliability" in wire["survey_scores"]
    ztf = next(r for r in records if r["survey"] == "ztf")
    assert set(ztf) >= {"alert_id", "object_id", "ra", "dec", "stamps", "survey_scores", "schema_version"}


def test_inspect_shared_data_reports_the_jpeg_packets(shared_data):
    rc, lines = _inspect(str(shared_data))
    assert rc == 1
    summary = lines[-1]
    assert summary["files"] == 209 and summary["decoded"] == 197 and summary["failed"] == 12
    assert summary["reasons"] == {"jpeg_cutout": 12}
    bad = [line for line in lines[:-1] if "error" in line]
    assert all(b["index"] == 0 and b["error"] == "jpeg_cutout" and b["file"].endswith(".avro") for b in bad)


def test_inspect_tarball_and_bad_file(tmp_path):
    archive = tmp_path / "alerts.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(SAMPLES / "ztf" / "alerce", arcname="ztf")
        tar.add(SAMPLES / "rubin" / "alerce-kafka" / "message_1.avro", arcname="rubin/message_1.avro")
    broken = tmp_path / "broken.avro"
    broken.write_bytes((SAMPLES / "rubin" / "alerce-kafka" / "message_1.avro").read_bytes()[:300])
    rc, lines = _inspect(str(archive), str(broken))
    assert rc == 1
    # tarballs are read in archive order, one member at a time (never indexed whole)
    assert [line.get("survey") for line in lines[:2]] == ["ztf", "rubin"]
    assert lines[2] == {"file": str(broken), "index": 0, "error": "truncated_avro", "detail": lines[2]["detail"]}
    assert lines[3]["files"] == 3 and lines[3]["failed"] == 1


def test_survey_classifier_cli_entry():
    """Through the real ``survey-classifier`` parser (needs every registered command module)."""
    from stream.cli import build_parser

    build_parser()
    rc, lines = _inspect(str(SAMPLES / "ztf" / "alerce"), module="stream.cli")
    assert rc == 0 and lines[-1]["decoded"] == 1
