"""Cost per alert of braai and ACAI: ``python -m benchmarks.ztf_keras_cost``.

Real ZTF alerts (the bundled samples, repeated to fill the batch; ``--pool FILE`` reads a
Fink-style Parquet dump instead), one batch of ``--batch`` (default 256) per call. Times the
model's own preprocessing (decoded alert -> tensors, on the CPU) and ``infer`` separately, with
``perf_counter`` over about ``--seconds`` after a warm-up, and reports the p50 per alert in
microseconds. ACAI's graph includes braai d6_m9 (the drb fill), so its infer cost includes it.
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

from benchmarks.inference import measure

__all__ = ["main", "ztf_alerts"]


def ztf_alerts(n: int, pool: str | None = None) -> list:
    """``n`` real ZTF alerts with every ACAI feature, cycling through the source."""
    from engines.preprocess import acai_applies
    from schemas import SAMPLES_DIR
    from schemas.alert import Alert
    from schemas.decode import iter_file

    if pool:
        from schemas.decode.parquet import iter_parquet

        found = [a for _, a in iter_parquet(pool, limit=4 * n) if isinstance(a, Alert)]
    else:
        found = [a for p in sorted(Path(SAMPLES_DIR, "ztf").rglob("*.avro")) for _, a in iter_file(p) if isinstance(a, Alert)]
    found = [a for a in found if acai_applies(a)]
    if not found:
        raise SystemExit("no ZTF alert with all ACAI features found")
    return list(itertools.islice(itertools.cycle(found), n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="braai / ACAI cost per alert")
    parser.add_argument("--backends", default="onnxruntime")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pool", default=None, help="a Fink-style Parquet dump instead of the bundled samples")
    args = parser.parse_args(argv)

    from engines.registry import load_registry
    from stream.logs import configure_logging

    configure_logging("console", "warning")
    alerts = ztf_alerts(args.batch, args.pool)
    registry = load_registry()
    print(f"{'model':<22}{'backend':<13}{'batch':>6}{'preprocess us/alert':>22}{'infer us/alert':>17}{'total us/alert':>17}")
    with tempfile.TemporaryDirectory() as cache:
        for backend in args.backends.split(","):
            for name, version in (("braai", None), ("braai", "d6_m9"), ("acai", None)):
                runner = registry.load_runner(name, backend, cache_dir=cache, version=version)
                pre, _, _ = measure(runner.preprocess, alerts, args.seconds)
                batch = runner.preprocess(alerts)
                inf, _, _ = measure(runner.infer, batch, args.seconds)
                label = f"{name} {runner.card.version}"
                per = 1e6 / len(alerts)
                print(f"{label:<22}{backend:<13}{len(alerts):>6}{pre * per:>22.0f}{inf * per:>17.0f}{(pre + inf) * per:>17.0f}")
                runner.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
