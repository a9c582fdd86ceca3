"""The real service in its own process, for the benchmark: ``python -m benchmarks.service_worker ENV_JSON OUT_JSON``.

Why a separate process: its CPU time and resident memory must be the service's alone, not the
benchmark's (which holds the whole night in memory). The settings come from an environment
mapping (the ``SC__*`` variables, read by :func:`stream.config.load_settings`); the service is
built by :func:`stream.service.build_service`, the one place that wires it, and runs until
SIGTERM (the benchmark sends it once every output is read). The summary written to ``OUT_JSON``:
totals, per-stage seconds from ``Metrics.stage_seconds``, the latency histogram's sum/count,
``getrusage`` for this process and its reaped children, RSS after start-up and at the end, and
the peak RSS (``VmHWM``).
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "histogram_sums", "rss_bytes"]


def rss_bytes(field: str = "VmRSS") -> int:
    """Resident set size of this process from /proc (``VmRSS`` now, ``VmHWM`` its peak); 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def histogram_sums(registry: Any, metric: str) -> dict[str, dict[str, float]]:
    """``{label value or "": {"sum": s, "count": n}}`` of a Prometheus histogram in ``registry``."""
    out: dict[str, dict[str, float]] = {}
    for family in registry.collect():
        if family.name != metric:
            continue
        for sample in family.samples:
            if "le" in sample.labels:
                continue
            label = next(iter(sample.labels.values()), "")
            if sample.name.endswith("_sum"):
                out.setdefault(label, {})["sum"] = float(sample.value)
            elif sample.name.endswith("_count"):
                out.setdefault(label, {})["count"] = float(sample.value)
    return out


def _usage(who: int) -> dict[str, float]:
    u = resource.getrusage(who)
    return {"user_s": round(u.ru_utime, 3), "system_s": round(u.ru_stime, 3), "maxrss_kib": u.ru_maxrss}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env_path, out_path = Path(argv[0]), Path(argv[1])
    env = json.loads(env_path.read_text())

    from stream.config import load_settings
    from stream.logs import configure_logging
    from stream.service import build_service

    settings = load_settings(env=env)
    configure_logging(settings.observability.log_format, settings.observability.log_level)
    t_build = time.time()
    service = build_service(settings)
    service.install_signal_handlers()
    summary: dict[str, Any] = {"build_s": round(time.time() - t_build, 3), "rss_start_bytes": rss_bytes(),
                               "usage_after_build": _usage(resource.RUSAGE_SELF), "run_started_unix": time.time()}
    metrics = service.run()
    summary["run_ended_unix"] = time.time()
    summary["rss_end_bytes"] = rss_bytes()
    summary["peak_rss_bytes"] = rss_bytes("VmHWM")
    totals = metrics.totals()
    summary["totals"] = {"consumed": totals.consumed, "published": totals.published, "duplicates": totals.duplicates,
                         "dead_lettered": totals.dead_lettered, "balanced": totals.balanced}
    summary["stage_seconds"] = histogram_sums(metrics.registry, "sc_stage_seconds")
    summary["latency_histogram"] = histogram_sums(metrics.registry, "sc_end_to_end_latency_seconds")
    summary["batch_size_histogram"] = histogram_sums(metrics.registry, "sc_batch_size")
    summary["usage_self"] = _usage(resource.RUSAGE_SELF)
    summary["usage_children"] = _usage(resource.RUSAGE_CHILDREN)
    out_path.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
