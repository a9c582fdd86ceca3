"""Reason, time and peak memory of each hostile case, each decoded in a fresh process.

``python -m tests.hostile.measure``: one line per case (reason, milliseconds, peak resident
memory of the decoding process minus its resident memory after imports, and the tracemalloc
peak of Python and numpy allocations). A figure for the closing note, not a test.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc

__all__ = ["measure_one", "main"]


def measure_one(name: str) -> dict[str, object]:
    """Decode case ``name`` in this process through the service's decode step and measure it."""
    from schemas.decode.limits import DecodeSettings
    from stream.pipeline import decode_values
    from tests.hostile.corpus import hostile_cases

    case = next(c for c in hostile_cases() if c.name == name)
    decode_values([b"\x00"], DecodeSettings())  # warm imports and caches
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    (outcome,), _ = decode_values([case.value], DecodeSettings())
    elapsed = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"case": name, "bytes": len(case.value), "expected": case.reason, "reason": outcome.reason,
            "ms": round(elapsed * 1000, 1), "rss_growth_mb": round((peak - base) / 1024, 1),
            "traced_peak_mb": round(traced / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--one"]:
        print(json.dumps(measure_one(args[1])))
        return 0
    from tests.hostile.corpus import hostile_cases

    worst = 0
    for case in hostile_cases():
        out = subprocess.run([sys.executable, "-m", "tests.hostile.measure", "--one", case.name],
                             capture_output=True, text=True, timeout=300, check=True)
        row = json.loads(out.stdout)
        worst = 1 if row["reason"] != row["expected"] else worst
        print(f"{row['case']:48s} {row['bytes']:>7} B  {row['reason']:18s} {row['ms']:>7} ms  "
              f"RSS +{row['rss_growth_mb']:>6} MB  traced peak {row['traced_peak_mb']:>6} MB", flush=True)
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
