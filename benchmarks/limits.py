"""The limits: each stage alone, in this process, on the night's own alerts (no Kafka, no Redis).

* bare decode: :func:`stream.envelope.decode_values`, the function the service's decode worker runs;
* the raw baseline: ``gzip.decompress`` (ZTF cutouts are gzip) + ``astropy.io.fits`` parse of
  every cutout, the floor any decoder has to pay;
* bare preprocessing and bare inference per backend and batch size (the runners the service
  loads, from :func:`stream.service.load_runners`);
* the bare loop: decode + preprocess + infer, batch after batch, in one process.

Timings follow the style guide: warm up first, time with ``perf_counter``, repeat until a
minimum time has passed, report the rate and the per-call p50/p95/p99. Each timing also records
this process's CPU time (``process_time``) over the same calls; the machine's limit takes the
smaller of the two per item (:meth:`Timing.cost_ms_per_item`), so other jobs on a shared machine
(waiting for a core) do not lower the limit.
"""
from __future__ import annotations

import gzip
import io
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from engines.scoring import score_items
from schemas.alert import InputKind
from stream.config import DecodeSettings, Settings
from stream.envelope import StageTimer, decode_values

__all__ = ["Timing", "time_calls", "bare_decode", "raw_gunzip_fits", "bare_preprocess", "bare_inference",
           "bare_loop", "decoded_items", "tile_batch", "exposure_limits", "usable_cores", "machine_limit"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Timing:
    """Items per second and seconds per call of one repeated measurement."""

    items: int
    calls: int
    seconds: float
    call_p50_ms: float
    call_p95_ms: float
    call_p99_ms: float
    #: CPU seconds of this process over the timed calls (every thread of it), None where not measured
    cpu_seconds: float | None = None

    @property
    def per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float | None]:
        return {"items": self.items, "calls": self.calls, "seconds": round(self.seconds, 4), "per_s": round(self.per_s, 1),
                "ms_per_item": round(1000 * self.seconds / self.items, 4) if self.items else None,
                "call_p50_ms": round(self.call_p50_ms, 3), "call_p95_ms": round(self.call_p95_ms, 3), "call_p99_ms": round(self.call_p99_ms, 3),
                "cpu_ms_per_item": round(1000 * self.cpu_seconds / self.items, 4) if self.items and self.cpu_seconds is not None else None,
                "cost_ms_per_item": self.cost_ms_per_item()}

    def cost_ms_per_item(self) -> float | None:
        """The one-core cost per item: the smaller of wall and process CPU time per item. On a
        shared machine the wall time includes waiting for a core (other jobs); the CPU time does
        not, but counts any helper thread an engine spins: the smaller is the stricter limit."""
        if not self.items:
            return None
        wall = 1000 * self.seconds / self.items
        return round(min(wall, 1000 * self.cpu_seconds / self.items) if self.cpu_seconds is not None else wall, 4)


def time_calls(fn: Callable[[], Any], items_per_call: int, *, min_seconds: float, min_calls: int = 3, warmup: int = 1,
               max_calls: int = 100_000) -> Timing:
    """Call ``fn`` after ``warmup`` untimed calls until ``min_seconds`` and ``min_calls`` are both reached."""
    for _ in range(warmup):
        fn()
    durations: list[float] = []
    start, cpu0 = time.perf_counter(), time.process_time()
    while len(durations) < max_calls and (len(durations) < min_calls or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu0
    ms = np.asarray(durations) * 1000
    return Timing(items_per_call * len(durations), len(durations), float(sum(durations)),
                  float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(np.percentile(ms, 99)), cpu)


def bare_decode(values: Sequence[bytes], settings: DecodeSettings) -> tuple[Timing, dict[str, int]]:
    """Decode every value once, in one process (after a short untimed warm-up); returns the timing and the outcome counts."""
    decode_values(values[:20], settings)
    t0, cpu0 = time.perf_counter(), time.process_time()
    outcomes, _ = decode_values(values, settings)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.reason or "ok"] = counts.get(o.reason or "ok", 0) + 1
    ms = seconds * 1000 / max(1, len(values))
    return Timing(len(values), 1, seconds, ms, ms, ms, cpu), counts


def _parse_cutout(raw: bytes) -> np.ndarray | None:
    from astropy.io import fits

    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False) as hdus:
            for hdu in hdus:
                if hdu.data is not None:
                    return np.asarray(hdu.data)
    return None


def raw_gunzip_fits(cutouts_per_alert: Sequence[Sequence[bytes]]) -> Timing:
    """gzip.decompress + astropy.io.fits parse (data read) of every cutout of every alert (after a short warm-up)."""
    for cutouts in cutouts_per_alert[:20]:
        for raw in cutouts:
            _parse_cutout(raw)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for cutouts in cutouts_per_alert:
        for raw in cutouts:
            _parse_cutout(raw)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ms = seconds * 1000 / max(1, len(cutouts_per_alert))
    return Timing(len(cutouts_per_alert), 1, seconds, ms, ms, ms, cpu)


def decoded_items(values: Sequence[bytes], settings: DecodeSettings) -> list[Any]:
    """The decoded items of ``values`` (failed decodes left out)."""
    outcomes, _ = decode_values(values, settings)
    return [item for o in outcomes if o.ok for item in o.items]


def tile_batch(batch: Any, size: int) -> Any:
    """A batch of exactly ``size`` rows, repeating the rows of ``batch`` (torch tensor or numpy, or a
    tuple of them for a model with several inputs: ACAI's images and features)."""
    if isinstance(batch, (tuple, list)):
        return tuple(tile_batch(b, size) for b in batch)
    n = int(batch.shape[0])
    reps = -(-size // n)
    if hasattr(batch, "repeat") and not isinstance(batch, np.ndarray):
        return batch.repeat(reps, *([1] * (batch.dim() - 1)))[:size].contiguous()
    return np.ascontiguousarray(np.concatenate([batch] * reps)[:size])


def bare_preprocess(runner: Any, items: Sequence[Any], batch_size: int, *, min_seconds: float) -> Timing:
    """``runner.preprocess`` on chunks of ``batch_size`` items, cycling through ``items``."""
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size) if len(items[i:i + batch_size]) == batch_size] or [items]
    state = {"i": 0}

    def one() -> None:
        runner.preprocess(chunks[state["i"] % len(chunks)])
        state["i"] += 1

    return time_calls(one, len(chunks[0]), min_seconds=min_seconds)


def bare_inference(runner: Any, preprocessed: Any, batch_sizes: Sequence[int], *, min_seconds: float) -> dict[int, Timing]:
    """``runner.infer`` alone at each batch size (inputs prepared once, outputs copied to host by the engine)."""
    out: dict[int, Timing] = {}
    limit = int(getattr(runner, "max_batch", max(batch_sizes)))
    for size in batch_sizes:
        if size > limit:
            log.info("batch size above the engine's max batch: skipped", size=size, max_batch=limit)
            continue
        batch = tile_batch(preprocessed, size)
        out[size] = time_calls(lambda b=batch: runner.infer(b), size, min_seconds=min_seconds, warmup=2)
    return out


def bare_loop(values: Sequence[bytes], runners: dict[InputKind, list[Any]], settings: Settings, batch_size: int) -> tuple[Timing, dict[str, float]]:
    """decode + preprocess + infer of every value, ``batch_size`` messages at a time, in one process."""
    timer = StageTimer()
    durations = []
    t_all = time.perf_counter()
    scored = 0
    for start in range(0, len(values), batch_size):
        t0 = time.perf_counter()
        outcomes, decode_s = decode_values(values[start:start + batch_size], settings.decode, settings.kafka.schema_registry_url)
        timer.add("decode", decode_s)
        by_kind: dict[InputKind, list[Any]] = {}
        for o in outcomes:
            for item in o.items:
                by_kind.setdefault(item.kind, []).append(item)
        for kind, items in by_kind.items():
            if runners.get(kind):
                score_items(items, runners[kind], timer.add)
                scored += len(items)
        durations.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - t_all
    ms = np.asarray(durations) * 1000
    timing = Timing(len(values), len(durations), seconds, float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(np.percentile(ms, 99)))
    stages = {k: round(v, 4) for k, v in timer.seconds.items()}
    stages["scored_items"] = scored
    return timing, stages


def exposure_limits(values: Sequence[bytes], runners: dict[InputKind, list[Any]], settings: DecodeSettings) -> dict[str, Any]:
    """Decode, preprocess and infer of each raw exposure, one at a time (seconds per exposure)."""
    rows = []
    for value in values:
        t0 = time.perf_counter()
        outcomes, _ = decode_values([value], settings)
        t_decode = time.perf_counter() - t0
        if not outcomes[0].ok:
            rows.append({"decode_s": round(t_decode, 3), "error": f"{outcomes[0].reason}: {outcomes[0].detail}"})
            continue
        items = list(outcomes[0].items)
        row: dict[str, Any] = {"decode_s": round(t_decode, 3), "items": len(items), "models": {}}
        for item in items:
            for runner in runners.get(item.kind, []):
                # runner.preprocess/infer directly: one raw exposure gives one row per CCD chip
                t1 = time.perf_counter()
                batch = runner.preprocess([item])
                t2 = time.perf_counter()
                probs = np.asarray(runner.infer(batch))
                t3 = time.perf_counter()
                m = row["models"].setdefault(runner.provenance.name, {"preprocess_s": 0.0, "infer_s": 0.0, "rows": 0})
                m["preprocess_s"] = round(m["preprocess_s"] + t2 - t1, 3)
                m["infer_s"] = round(m["infer_s"] + t3 - t2, 3)
                m["rows"] += int(probs.shape[0])
                m["input_shape"] = list(batch.shape)
        rows.append(row)
    return {"per_exposure": rows}


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_limit(decode_ms: float, models: dict[str, dict[str, Any]], cores: int) -> dict[str, Any]:
    """The machine's limit for the configured alert models: the per-stage minimum costs spread
    over ``cores``.

    ``models[name]`` holds ``preprocess_ms`` (per item it applies to), ``inference_ms``
    (backend -> batch -> ms per item) and ``share`` (the fraction of alerts the model scores:
    a ZTF-only model skips Rubin alerts). Each model counts at its fastest measured backend and
    batch. One alert then costs ``decode + sum(share * (preprocess + best inference))`` CPU
    milliseconds, and ``cores`` cores finish ``1000 * cores / cost`` alerts a second. Kafka,
    Redis and the service's own bookkeeping are left out: they are what the service adds.
    """
    per_model: dict[str, Any] = {}
    cost = decode_ms
    for name, m in sorted(models.items()):
        best = min(((ms, backend, int(batch)) for backend, by_batch in m["inference_ms"].items()
                    for batch, ms in by_batch.items() if ms), default=None)
        if best is None:
            per_model[name] = {"error": "no inference timing"}
            continue
        ms, backend, batch = best
        share = float(m.get("share", 1.0))
        model_ms = share * (float(m["preprocess_ms"]) + ms)
        cost += model_ms
        per_model[name] = {"best_backend": backend, "best_batch": batch, "inference_ms": round(ms, 4),
                           "preprocess_ms": round(float(m["preprocess_ms"]), 4), "share": round(share, 3),
                           "ms_per_alert": round(model_ms, 4)}
    return {"cores": cores, "decode_ms": round(decode_ms, 4), "models": per_model, "ms_per_alert_one_core": round(cost, 4),
            "alerts_per_s": round(1000.0 * cores / cost, 1) if cost > 0 else None}
