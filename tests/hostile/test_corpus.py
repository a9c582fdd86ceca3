"""Every hostile case is refused with its typed reason, quickly and in bounded memory.

The cases reproduce what a review found could hang, bloat or crash decoding (see
:mod:`tests.hostile.corpus`); here each goes through the service's own decode step
(:func:`stream.envelope.decode_values`), so ``internal_error`` (a bug of ours) would show.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from schemas.decode.limits import DecodeSettings
from stream.envelope import decode_values
from tests.hostile.corpus import HostileCase, build_corpus, hostile_cases

REPO = Path(__file__).resolve().parents[2]
CASES = hostile_cases()
#: Generous bounds: the slowest case takes ~0.3 s and the largest peak is ~70 MB (a 32 MiB
#: block inflated and its copy); unbounded decoding took minutes and gigabytes.
SECONDS = 5.0
PEAK_BYTES = 160 * 1024 * 1024


def test_corpus_covers_every_reason_it_claims():
    assert len({c.name for c in CASES}) == len(CASES)
    assert {"bad_schema", "bad_field_type", "bad_fits_header", "too_many_records", "too_large",
            "unsupported_codec", "truncated_avro", "empty"} <= {c.reason for c in CASES}
    assert max(len(c.value) for c in CASES) < 256 * 1024


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_decodes_to_its_reason_in_bounded_time_and_memory(case: HostileCase):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        (outcome,), _ = decode_values([case.value], DecodeSettings())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    assert (outcome.reason, outcome.items) == (case.reason, ()), outcome.detail
    assert elapsed < SECONDS
    assert peak < PEAK_BYTES


def test_inspect_on_the_corpus_directory_ends_with_a_summary(tmp_path):
    build_corpus(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "inspect", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=REPO)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = lines[-1]
    assert proc.returncode == 1 and summary["summary"] is True
    errors = {Path(line["file"]).stem: line["error"] for line in lines[:-1] if "error" in line}
    expected = {c.name: c.reason for c in CASES if c.reason != "empty"}
    assert errors == expected
    assert summary["failed"] == len(expected) and summary["decoded"] == 0
