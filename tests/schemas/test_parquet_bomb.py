"""The offline tools' Parquet reader is bounded by the rows it holds (issue #23, case 7).

A Parquet row group was read whole: a small file whose dictionary page holds one large value,
referenced by every row, became gigabytes once materialised (a 10.9 kB file drove ``inspect`` to
2.1 GB). Rows are now read a few at a time (``PARQUET_BATCH_ROWS``), so the reader holds what
those rows hold, whatever the group declares. Measured as the reading process's peak RSS.
"""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

ROWS, VALUE_BYTES = 1000, 512 * 1024  # 512 MB once materialised
#: Peak resident size of a process reading it (imports included). See the printed lines.
PEAK_BOUND_MB = 300


def _bomb(path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    big = "x" * VALUE_BYTES
    table = pa.table({"objectId": pa.array([big] * ROWS).dictionary_encode(), "candid": pa.array(range(ROWS), pa.int64())})
    # store_schema=False: read back as plain strings, as a file from any other writer is
    pq.write_table(table, path, use_dictionary=True, compression="zstd", row_group_size=ROWS, store_schema=False)


def _peak_mb(path: str, how: str) -> tuple[float, int]:
    """Peak resident size (VmHWM, MiB) of a fresh process reading ``path``, and the rows it saw
    (not ru_maxrss: Linux carries it over from the parent through fork and exec)."""
    read = (f"sum(1 for _ in iter_parquet({path!r}))" if how == "decode" else
            f"sum(1 for e in walk([Path({path!r})]) if e.kind == 'parquet_row')")
    code = ("from pathlib import Path\n"
            "from schemas.decode.parquet import iter_parquet\nfrom schemas.walk import walk\n"
            f"n = {read}\n"
            "hwm = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
            "print(hwm / 1024, n)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    peak, n = done.stdout.split()
    return float(peak), int(n)


def test_a_dictionary_bomb_is_read_a_few_rows_at_a_time(tmp_path):
    path = str(tmp_path / "bomb.parquet")
    _bomb(path)
    size = (tmp_path / "bomb.parquet").stat().st_size
    for how in ("decode", "walk"):
        peak, n = _peak_mb(path, how)
        print(f"\n{size / 1024:.1f} kB Parquet, {ROWS} rows x {VALUE_BYTES // 1024} kB: {how} peak RSS {peak:.0f} MiB, {n} rows")
        assert n == ROWS
        assert peak < PEAK_BOUND_MB, f"{how}: {peak:.0f} MiB"
