"""Measure decode cost per message: ``python -m benchmarks.decode_cost [DATA_DIR] [-n N]``.

Decodes real packets in a loop in one process (after a warm-up pass that also fills the schema
caches) and prints throughput and p50/p95/p99 latency per message for each packet family.
Default data: ``../shared/data`` beside the repo, else the bundled samples; where
``../shared/rubin_pool`` is there too, also the LSSTCam alerts of 2026-03-09 that carry a year of
history (re-encoded by replay as Rubin's wire messages), whose history decode skips.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from schemas.decode.message import decode_message

__all__ = ["bench", "main"]

FAMILIES = {
    "ztf container, 3 gzip FITS cutouts (kowalski v3.3/v4.01)": "ztf/kowalski",
    "ztf container (fink v3.2)": "ztf/fink",
    "rubin wire, 3 plain FITS x 3 HDUs (v7.4)": "rubin/alerce-kafka",
    "rubin container (fink topLevelRecord)": "rubin/fink",
}


def bench(messages: list[bytes], n: int) -> dict[str, float]:
    for value in messages:
        decode_message(value)
    times = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        decode_message(messages[i % len(messages)])
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    times.sort()
    return {"per_s": n / total, "p50_us": times[n // 2] * 1e6, "p95_us": times[int(n * 0.95)] * 1e6,
            "p99_us": times[int(n * 0.99)] * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not default.is_dir():
        default = Path(__file__).resolve().parents[1] / "schemas" / "samples"
    parser.add_argument("data", nargs="?", type=Path, default=default)
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args(argv)
    for label, sub in FAMILIES.items():
        messages = [p.read_bytes() for p in sorted((args.data / sub).rglob("*.avro"))]
        if not messages:
            continue
        _print(label, bench(messages, args.n))
    history = args.data.parent / "rubin_pool" / "fink-tutorials"
    if history.is_dir():
        from stream.replay.sources import SourceMessage, iter_source

        messages = [m.value for m in iter_source(history) if isinstance(m, SourceMessage)]
        _print(f"rubin wire with a year of history ({len(messages)} LSSTCam alerts of 2026-03-09)", bench(messages, args.n))
    return 0


def _print(label: str, r: dict[str, float]) -> None:
    print(f"{label}: {r['per_s']:.0f} msg/s, p50 {r['p50_us']:.0f} us, p95 {r['p95_us']:.0f} us, p99 {r['p99_us']:.0f} us")


if __name__ == "__main__":
    raise SystemExit(main())
