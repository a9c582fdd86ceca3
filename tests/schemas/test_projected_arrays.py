"""Arrays inside the detection record are skipped, not materialised (issue #23, case 7).

The projection read ``candidate`` whole, so an array hidden in it (30 M items in a 97 kB alert;
here 15 M longs: 667 MiB before, 94 MiB after) became a Python list in ``inspect``, ``replay``, ``classify`` and ``stamps`` (which
have no decode worker's memory cap): 4.7 GB. The reader now leaves array and map fields of
the detection records out (no real ZTF or Rubin schema has any), and fastavro skips them.
"""
from __future__ import annotations

import copy
import io
import subprocess
import sys

import fastavro

from tests.conftest import REPO
from tests.stream.hostile_messages import _first_record, real_ztf_packets

#: 15 M longs of 1000 (two bytes each: a 30 MB block, under the block cap; deflated to ~30 kB).
#: Each read becomes its own Python int: ~540 MB materialised.
ITEMS, VALUE = 15_000_000, 1000
#: Peak resident size of a fresh process reading the alert (imports included). See the printed line.
PEAK_BOUND_MB = 300


def _alert_with_hidden_array(path) -> int:
    schema, record = _first_record(real_ztf_packets(1)[0])
    schema = copy.deepcopy(schema)
    candidate = next(f for f in schema["fields"] if f["name"] == "candidate")["type"]
    candidate["fields"].append({"name": "hidden", "type": {"type": "array", "items": "long"}, "default": []})
    record["candidate"]["hidden"] = [VALUE] * ITEMS
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), [record], codec="deflate")
    path.write_bytes(out.getvalue())
    return len(out.getvalue())


def test_an_array_hidden_in_the_candidate_is_skipped_not_materialised(tmp_path):
    path = tmp_path / "hidden.avro"
    size = _alert_with_hidden_array(path)
    code = ("from schemas.decode import iter_file\n"
            f"results = [r for _, r in iter_file({str(path)!r})]\n"
            "hwm = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
            "print(hwm / 1024, type(results[0]).__name__, 'hidden' in getattr(results[0], 'candidate', {}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    peak, kind, hidden = done.stdout.split()
    print(f"\n{size / 1024:.0f} kB alert, {ITEMS:,} items in candidate.hidden: peak RSS {float(peak):.0f} MiB ({kind})")
    assert float(peak) < PEAK_BOUND_MB
    assert kind == "Alert" and hidden == "False"
