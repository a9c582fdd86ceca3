"""Reason, time and peak memory of each hostile case, each decoded in a fresh process.

``python -m tests.hostile.measure``: one line per case (reason, milliseconds, growth of the
decoding process's peak resident memory over its size after imports, and the tracemalloc peak
of Python and numpy allocations). A figure for the closing note, not a test.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

__all__ = ["measure_one", "main"]


def _reset_peak_rss_kb() -> int:
    """Reset this process's peak resident size to its current size (Linux ``clear_refs`` 5); return it in kB.

    Without the reset, the peak reached while importing (torch, astropy) would hide the decode.
    Where the kernel does not allow it, ``ru_maxrss`` is used (a lower bound on the growth).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _peak_rss_kb()


def _peak_rss_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_one(path: Path) -> dict[str, object]:
    """Decode the message value in ``path`` in this process through the service's decode step and measure it.

    The value is read from a file (written by :func:`main`'s parent process) so that building
    the corpus, which allocates what the bombs claim, does not count in this process's peak.
    """
    from schemas.decode.limits import DecodeSettings
    from stream.envelope import decode_values

    value = path.read_bytes()
    expected = json.loads((path.parent / "expected.json").read_text())[path.stem]
    decode_values([b"\x00"], DecodeSettings())  # warm imports and caches
    base = _reset_peak_rss_kb()
    tracemalloc.start()
    start = time.perf_counter()
    (outcome,), _ = decode_values([value], DecodeSettings())
    elapsed = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _peak_rss_kb()
    return {"case": path.stem, "bytes": len(value), "expected": expected, "reason": outcome.reason,
            "ms": round(elapsed * 1000, 1), "rss_growth_mb": round((peak - base) / 1024, 1),
            "traced_peak_mb": round(traced / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--one"]:
        print(json.dumps(measure_one(Path(args[1]))))
        return 0
    from tests.hostile.corpus import build_corpus

    worst = 0
    directory = Path(tempfile.mkdtemp(prefix="hostile-"))
    for case in build_corpus(directory):
        out = subprocess.run([sys.executable, "-m", "tests.hostile.measure", "--one", str(directory / f"{case.name}.avro")],
                             capture_output=True, text=True, timeout=300, check=True)
        row = json.loads(out.stdout)
        worst = 1 if row["reason"] != row["expected"] else worst
        print(f"{row['case']:48s} {row['bytes']:>7} B  {row['reason']:18s} {row['ms']:>7} ms  "
              f"RSS +{row['rss_growth_mb']:>6} MB  traced peak {row['traced_peak_mb']:>6} MB", flush=True)
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
