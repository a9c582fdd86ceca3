"""``python -m benchmarks.night``: a replayed night through the real service, beside the machine's limits.

In one run, on the same in-memory alerts:

1. builds the night (:mod:`benchmarks.night_data`): bundled real ZTF + Rubin packets multiplied
   with fresh ids to ``--alerts``, plus ``--exposures`` synthetic raw HST-like exposures;
2. measures the limits (:mod:`benchmarks.limits`): bare decode, raw gunzip + FITS parse, bare
   preprocessing, bare inference per backend and batch size, the bare decode+preprocess+infer loop;
3. runs the real service (:mod:`benchmarks.service_run`) against the embedded broker and Redis,
   draining a pre-loaded topic (``asap``) and under paced bursts shaped like Rubin's (``paced``:
   bursts of ~60% of the measured capacity, sent within a few seconds, every ``--burst-period-s``);
4. writes ``night.json``, ``night.md`` and ``night.png`` into ``--out`` (default
   ``benchmarks/results/<cpu-or-gpu>/``, ``.../quick/`` with ``--quick``) and prints the ratios.

The models may be untrained (``engine.allow_untrained`` is set): speed does not depend on the
weights' values, and the results say so. On a CUDA host with TensorRT the service backend is
``tensorrt`` on ``cuda`` and the inference table adds batch 1024; the results name the device.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from benchmarks import limits
from benchmarks.machine import REPO, cuda_device, host_label, load_average, machine_stamp, tensorrt_usable
from benchmarks.night_data import build_night
from benchmarks.report import timeline, write_results
from benchmarks.service_run import BurstPlan, bare_consume, run_service
from stream.config import CPU_INFER_BATCH

__all__ = ["main", "parse_args", "compute_ratios", "fastest_backends", "stage_costs", "CPU_BACKENDS"]

log = structlog.get_logger(__name__)

CPU_BACKENDS = ("torch", "onnxruntime", "openvino")
RESULTS = REPO / "benchmarks" / "results"


#: the model whose difference-stamp preprocessing the goals name (>= 10,000 alerts/s per core)
DIFFERENCE_STAMP_MODEL = "realbogus"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.night", description=__doc__.split("\n\n")[0])
    p.add_argument("--alerts", type=int, default=50_000, help="alerts in the night (default 50000)")
    p.add_argument("--source", type=Path, default=None,
                   help="alerts to multiply: anything replay reads (a folder, a tarball, a Fink Parquet dump such as "
                        "../shared/ztf_pool/alerts.parquet; default: the bundled samples)")
    p.add_argument("--quick", action="store_true", help="short timings and short bursts (a smoke run, not figures to quote)")
    p.add_argument("--backends", nargs="+", default=None,
                   help="inference backends to compare (default: torch onnxruntime openvino, + tensorrt with CUDA)")
    p.add_argument("--service-backend", default=None, help="backend the service runs (default onnxruntime; tensorrt with CUDA + TensorRT)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/<machine>/)")
    p.add_argument("--exposures", type=int, default=None, help="synthetic raw exposures to decode and score (default 2; 0 with --quick)")
    p.add_argument("--limit-alerts", type=int, default=None, help="alerts used for the limits (default min(alerts, 5000))")
    p.add_argument("--bursts", type=int, default=None, help="paced bursts (default 4; 2 with --quick)")
    p.add_argument("--burst-period-s", type=float, default=None, help="seconds between bursts (default 30; 10 with --quick)")
    p.add_argument("--burst-window-s", type=float, default=None, help="seconds over which one burst arrives (default 3; 2 with --quick)")
    p.add_argument("--burst-load", type=float, default=0.6, help="burst size as a fraction of capacity x period (default 0.6)")
    p.add_argument("--skip-service", action="store_true", help="limits only (no broker, no Redis)")
    p.add_argument("--models", nargs="+", default=[],
                   help="alert models to run, in the limits and the service alike (default: every registered model; "
                        "e.g. --models realbogus for the real/bogus model alone)")
    p.add_argument("--members", type=int, nargs="+", default=None,
                   help="member counts to run, each N service processes in one consumer group (e.g. --members 1 2): "
                        "throughput, CPU ms per alert, latency p50/p95/p98/p99 and the share within 60 s per count; "
                        "the limits and the single-member runs are left out (benchmarks/members.py)")
    p.add_argument("--visits", type=int, default=None, help="with --members: visits the night is sent as (default 1)")
    p.add_argument("--visit-period-s", type=float, default=None, help="with --members: seconds between visits (default 30)")
    p.add_argument("--rubin-night", action="store_true",
                   help="a Rubin-shaped night through --members (default 1): --visits (default 10) visits of real LSSTCam alerts "
                        "(benchmarks.night_data.LSSTCAM_SOURCES, or --source) with sizes drawn from --visit-sizes, divided by "
                        "--scale, one every --cadence-s seconds (benchmarks/rubin_night.py); --alerts is ignored")
    p.add_argument("--visit-sizes", default=None, help="with --rubin-night: the visit-size distribution (default "
                   "lognormal:median=9000,sigma=0.35,peak=40000,peak_share=0.02,min=1000,max=40000)")
    p.add_argument("--scale", type=float, default=None, help="with --rubin-night: every visit size is divided by this (default 10)")
    p.add_argument("--cadence-s", default=None, help="with --rubin-night: seconds between visits, uniform in A:B (default 30:40)")
    p.add_argument("--seed", type=int, default=27, help="with --rubin-night: the seed of the drawn sizes and gaps (default 27)")
    p.add_argument("--break-point", default=None,
                   help="single visits of these sizes of LSSTCam alerts (comma-separated, e.g. 6000,9000,12000), smallest first, "
                        "each on a fresh stack, through each --members count, until the share published within 60 s falls "
                        "below 98%%: the visit size at which the objective breaks")
    args = p.parse_args(argv)
    if args.alerts < 1:
        p.error("--alerts must be >= 1")
    if args.members is not None and min(args.members) < 1:
        p.error("--members must be >= 1")
    if args.rubin_night or args.break_point:
        args.members = args.members or [1]
        try:
            from benchmarks.rubin_night import DEFAULT_SIZES, parse_visit_sizes

            args.visit_sizes = parse_visit_sizes(args.visit_sizes or DEFAULT_SIZES)
            lo, _, hi = (args.cadence_s or "30:40").partition(":")
            args.cadence_s = (float(lo), float(hi or lo))
            args.break_point = sorted(int(x) for x in args.break_point.split(",")) if args.break_point else None
        except ValueError as exc:
            p.error(str(exc))
        args.scale = args.scale or 10.0
        args.visits = args.visits or (10 if args.rubin_night else 1)
    args.visits = args.visits or 1
    args.visit_period_s = args.visit_period_s or 30.0
    q = args.quick
    args.exposures = args.exposures if args.exposures is not None else (0 if q else 2)
    args.limit_alerts = min(args.alerts, args.limit_alerts or 5000)
    args.bursts = args.bursts or (2 if q else 4)
    args.burst_period_s = args.burst_period_s or (10.0 if q else 30.0)
    args.burst_window_s = args.burst_window_s or (2.0 if q else 3.0)
    return args


def _engine_env(backend: str, device: str, model_backends: Mapping[str, str] | None = None, models: Sequence[str] = ()) -> dict[str, str]:
    env = {"SC__ENGINE__BACKEND": backend, "SC__ENGINE__DEVICE": device, "SC__ENGINE__ALLOW_UNTRAINED": "true",
           "SC__ENGINE__CACHE_DIR": str(REPO / "var" / "engines")}
    if models:
        env["SC__ENGINE__MODELS"] = ",".join(models)
    if model_backends:
        env["SC__ENGINE__BACKENDS"] = ",".join(f"{m}={b}" for m, b in sorted(model_backends.items()))
    return env


def _settings(backend: str, device: str, exposures: bool = False, models: Sequence[str] = ()) -> Any:
    """Settings for the limits: engines on ONE thread, so each timing is a one-core cost that
    :func:`benchmarks.limits.machine_limit` can spread over the cores."""
    from stream.config import load_settings

    env = _engine_env(backend, device, models=models)
    env["SC__ENGINE__THREADS"] = "1"
    env["SC__ENGINE__INFER_BATCH"] = "1000000"  # every batch size up to the model's own max is timed
    if exposures:
        env["SC__KAFKA__EXPOSURE_TOPICS"] = "bench-exposures"
    return load_settings(env=env)


def _device_for(backend: str, device: str) -> str:
    """onnxruntime and openvino run on the CPU here; torch and tensorrt use the CUDA device when there is one."""
    return device if backend in ("torch", "tensorrt") else "cpu"


def _load_alert_runners(backend: str, device: str, models: Sequence[str] = ()) -> list[Any]:
    from schemas.alert import InputKind
    from stream.service import load_runners

    return load_runners(_settings(backend, _device_for(backend, device), models=models)).get(InputKind.DIFFERENCE_ALERT, [])


def _close(runners: Sequence[Any]) -> None:
    for r in runners:
        r.close()


def measure_limits(
    night: Any, args: argparse.Namespace, backends: Sequence[str], service_backend: str, device: str,
) -> tuple[dict[str, Any], list[str]]:
    """Every limit, on the first ``args.limit_alerts`` alerts of the night."""
    from schemas.alert import InputKind
    from stream.config import DecodeSettings

    notes: list[str] = []
    min_s = 0.2 if args.quick else 2.0
    sample = night.alerts[:args.limit_alerts]
    values = [m.value for m in sample]
    decode_settings = DecodeSettings()
    out: dict[str, Any] = {"sample_alerts": len(sample), "batch_size": 256, "min_seconds_per_timing": min_s}

    timing, counts = limits.bare_decode(values, decode_settings)
    out["decode"] = {**timing.as_dict(), "outcomes": counts}
    log.info("bare decode", per_s=round(timing.per_s, 1), outcomes=counts)
    raw = limits.raw_gunzip_fits([m.cutouts for m in sample])
    out["raw_gunzip_fits"] = {**raw.as_dict(), "cutouts": sum(len(m.cutouts) for m in sample)}
    log.info("raw gunzip + FITS", per_s=round(raw.per_s, 1))

    items = limits.decoded_items(values[:1024], decode_settings)
    batch = min(256, len(items))
    inference: dict[str, Any] = {}
    sizes = [1, CPU_INFER_BATCH, 64, 256] + ([1024] if device.startswith("cuda") else [])
    untrained: set[str] = set()
    per_model: dict[str, dict[str, Any]] = {}
    for backend in backends:
        t0 = time.perf_counter()
        try:
            runners = _load_alert_runners(backend, device, args.models)
        except Exception as exc:  # noqa: BLE001 - one backend failing to load must not lose the others' figures
            inference[backend] = {"error": f"{type(exc).__name__}: {exc}"}
            notes.append(f"backend {backend} did not load: {type(exc).__name__}: {exc}")
            log.error("backend_did_not_load", backend=backend, error=str(exc))
            continue
        try:
            if not runners:
                inference[backend] = {"error": "no model registered for difference alerts"}
                continue
            untrained |= {r.provenance.name for r in runners if not r.provenance.trained}
            by_model: dict[str, Any] = {}
            for runner in runners:
                name = runner.provenance.name
                chosen = [items[i] for i in runner.select(items)] if hasattr(runner, "select") else items
                if not chosen:
                    by_model[name] = {"error": "applies to none of the sample's alerts"}
                    continue
                model = per_model.setdefault(name, {"share": len(chosen) / len(items), "inference_ms": {}})
                pre = runner.preprocess(chosen[:batch])
                if backend == service_backend:
                    # at the service's engine batch and at the limits' batch: the limit takes the faster
                    pre_timings = {b: limits.bare_preprocess(runner, chosen, min(b, len(chosen)), min_seconds=min_s)
                                   for b in sorted({CPU_INFER_BATCH, batch})}
                    best_size, timing = min(pre_timings.items(), key=lambda kv: kv[1].cost_ms_per_item() or float("inf"))
                    model["preprocess_ms"] = timing.cost_ms_per_item()
                    model["preprocess_by_batch"] = {str(b): t.as_dict() for b, t in pre_timings.items()}
                    if runner is runners[0]:
                        out["preprocess"] = {**timing.as_dict(), "batch": best_size}
                        out["preprocess_backend"] = backend
                timings = limits.bare_inference(runner, pre, sizes, min_seconds=min_s)
                model["inference_ms"][backend] = {str(s): t.cost_ms_per_item() for s, t in timings.items()}
                by_model[name] = {"device": _device_for(backend, device), "share_of_alerts": round(model["share"], 3),
                                  "provenance": {"version": runner.provenance.version, "trained": runner.provenance.trained,
                                                 "backend": runner.provenance.backend, "extra": runner.provenance.extra},
                                  "batches": {str(s): t.as_dict() for s, t in timings.items()}}
                log.info("bare_inference", backend=backend, model=name, **{f"b{s}_per_s": round(t.per_s) for s, t in timings.items()})
            first = runners[0].provenance.name
            inference[backend] = {"model": first, "load_s": round(time.perf_counter() - t0, 2), **by_model.get(first, {}),
                                  "models": by_model}
            if backend == service_backend:
                if not device.startswith("cuda"):  # the service's engine batch on the CPU
                    for runner in runners:
                        runner.max_batch = min(int(runner.max_batch), CPU_INFER_BATCH)
                loop, stages = limits.bare_loop(values, {InputKind.DIFFERENCE_ALERT: runners},
                                                _settings(backend, _device_for(backend, device), models=args.models), batch_size=256)
                out["bare_loop"] = {**loop.as_dict(), "stage_seconds": stages}
                out["loop_backend"] = backend
                log.info("bare_loop", backend=backend, per_s=round(loop.per_s, 1))
        finally:
            _close(runners)
    out["inference"] = inference
    out["preprocess_by_model"] = {name: m["preprocess_by_batch"] for name, m in sorted(per_model.items()) if "preprocess_by_batch" in m}
    measured = {name: m for name, m in per_model.items() if "preprocess_ms" in m}
    if measured and out["decode"].get("cost_ms_per_item"):
        out["machine_limit"] = limits.machine_limit(out["decode"]["cost_ms_per_item"], measured, limits.usable_cores())
        log.info("machine_limit", alerts_per_s=out["machine_limit"]["alerts_per_s"], cores=out["machine_limit"]["cores"])
    out["untrained_models"] = sorted(untrained)

    if night.exposures:
        out["exposures"] = _exposure_limits(night.exposures, service_backend, device, notes)
    return out, notes


def _exposure_limits(values: Sequence[bytes], backend: str, device: str, notes: list[str]) -> dict[str, Any]:
    from schemas.alert import InputKind
    from stream.config import DecodeSettings

    try:
        from stream.service import load_runners

        runners = load_runners(_settings(backend, _device_for(backend, device), exposures=True))
    except Exception as exc:  # noqa: BLE001 - a backend failing to load is recorded; the other figures still come
        notes.append(f"exposure models did not load on {backend}: {type(exc).__name__}: {exc}")
        return {"error": str(exc)}
    exposure_runners = {k: v for k, v in runners.items() if k == InputKind.RAW_EXPOSURE}
    try:
        if not exposure_runners:
            notes.append("no model is registered for raw exposures: exposures were built but not scored")
            return {"error": "no raw-exposure model registered"}
        # A raw ACS frame is ~34 MB inflated: above the alert-sized default caps, so they are raised here (and said so).
        settings = DecodeSettings(max_inflated_bytes=128 << 20, max_message_bytes=128 << 20)
        out = limits.exposure_limits(values, exposure_runners, settings)
        out["backend"] = backend
        out["decode_caps_mib"] = 128
        notes.append("raw exposures are measured in the bare path only: a packed ACS raw frame is ~16 MB (gzip), above the "
                     "default decode caps and Kafka message size, so the service run carries alerts only")
        return out
    finally:
        for rs in runners.values():
            _close(rs)


#: A backend whose engine takes one call at a time (OpenVINO: one infer request) runs all of a
#: model's chunks on one score thread, while an ONNX Runtime model's chunks spread over every
#: thread. Measured alone it may still be a few percent faster; in the service, braai and
#: realbogus on OpenVINO at batch 8 (1-7% faster alone) left a core idle (1.59 cores busy against
#: 1.77) and the drain fell from ~550 to 504 alerts/s. Such a backend is chosen only when it is
#: this much faster than the fastest backend that takes calls from several threads.
ONE_CALL_AT_A_TIME_MARGIN = 1.25


def one_call_at_a_time(backend: str) -> bool:
    """Whether ``backend``'s engine takes one call at a time (engines/scoring.py: its chunks are one task)."""
    if backend == "openvino":
        from engines.backends.openvino_backend import OpenVinoEngine

        return not OpenVinoEngine.concurrent_calls
    if backend == "tensorrt":
        from engines.backends.tensorrt_backend import TensorRtEngine

        return not TensorRtEngine.concurrent_calls
    return False


def fastest_backends(limits_out: Mapping[str, Any], batch: int = CPU_INFER_BATCH) -> dict[str, str]:
    """Per alert model, the backend with the most alerts/s at ``batch`` (the service's batch size)
    among those measured; a model measured on one backend only is left out. A backend that takes
    one call at a time wins only by :data:`ONE_CALL_AT_A_TIME_MARGIN` over one that takes several."""
    rates: dict[str, dict[str, float]] = {}
    for backend, row in (limits_out.get("inference") or {}).items():
        for model, m in ((row or {}).get("models") or {}).items():
            rate = ((m.get("batches") or {}).get(str(batch)) or {}).get("per_s")
            if rate:
                rates.setdefault(model, {})[backend] = float(rate)
    weighed = {model: {backend: rate / (ONE_CALL_AT_A_TIME_MARGIN if one_call_at_a_time(backend) else 1.0)
                       for backend, rate in by_backend.items()} for model, by_backend in rates.items()}
    return {model: max(by_backend, key=by_backend.__getitem__) for model, by_backend in sorted(weighed.items())}


def run_services(
    night: Any, args: argparse.Namespace, service_backend: str, device: str, bare_rate: float | None,
    model_backends: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    from stream.stack import EmbeddedStack

    notes: list[str] = []
    env = _engine_env(service_backend, _device_for(service_backend, device), model_backends, args.models)
    out: dict[str, Any] = {"backend": service_backend, "device": _device_for(service_backend, device),
                           "model_backends": dict(model_backends or {})}
    notes.append("asap latency includes the time an alert waited in the pre-loaded backlog (and the service's start); "
                 "quote the paced run's latency as end-to-end latency")
    with EmbeddedStack() as stack:
        # Kafka alone, before the service: what moving the night's messages costs here
        out["kafka_consume"] = bare_consume(night.alerts, stack=stack)
        log.info("bare consume", **out["kafka_consume"])
        asap = run_service("asap", night.alerts, stack=stack, service_env=env)
        out["asap"] = _run_summary(asap)
        capacity = out["asap"]["throughput_per_s"] or bare_rate or 100.0
        size = max(1, round(args.burst_load * capacity * args.burst_period_s))
        bursts = args.bursts
        if size * bursts > len(night.alerts):
            size = max(1, len(night.alerts) // bursts)
            notes.append(f"paced bursts cut to {size} alerts each to fit the night's {len(night.alerts)} alerts")
        plan = BurstPlan(bursts=bursts, size=size, window_s=args.burst_window_s, period_s=args.burst_period_s)
        log.info("paced run", capacity_per_s=capacity, **vars(plan))
        paced = run_service("paced", night.alerts, stack=stack, service_env=env, plan=plan)
        out["paced"] = _run_summary(paced)
        out["paced"]["offered_rate_in_burst_per_s"] = round(size / args.burst_window_s, 1)
        out["paced"]["capacity_used_for_plan_per_s"] = capacity
        # a burst of `size` alerts needs size / capacity seconds to drain: the last alert of a
        # burst cannot be classified sooner, so the latency target is 2 s on top of that
        out["paced"]["drain_s"] = round(size / capacity, 2)
        out["paced"]["p99_target_ms"] = round(2000 + 1000 * size / capacity)
    return out, notes


def _run_summary(run: Any) -> dict[str, Any]:
    s = run.summary()
    t0_ms = 1000 * (run.ready_unix if run.mode == "asap" else run.publish_started_unix)
    s["timeline"] = timeline(run.latencies_ms, t0_ms)
    t0 = run.ready_unix
    s["memory_timeline"] = {
        "t_s": [round(x["t"] - t0, 2) for x in run.samples],
        "service_rss_mib": [round(x.get("service_rss", 0) / 2**20, 1) for x in run.samples],
        "service_tree_rss_mib": [round(x.get("service_tree_rss", 0) / 2**20, 1) for x in run.samples],
    }
    return s


def _ratio(name: str, value: float | None, goal: str, met: bool | None) -> dict[str, Any]:
    return {"name": name, "value": None if value is None else round(value, 3), "goal": goal, "met": met}


def compute_ratios(lim: dict[str, Any], svc: dict[str, Any]) -> list[dict[str, Any]]:
    """The ratios benchmarks/README.md names as the performance goals (None where a part was not measured)."""
    ratios = []
    asap = (svc.get("asap") or {}).get("throughput_per_s")
    machine = lim.get("machine_limit") or {}
    limit, cost, cores = machine.get("alerts_per_s"), machine.get("ms_per_alert_one_core"), machine.get("cores")
    r = asap / limit if asap and limit else None
    ratios.append(_ratio("service alerts/s / machine limit (stage minima over the usable cores)", r, ">= 0.6",
                         None if r is None else r >= 0.6))
    # the same limit with what Kafka alone costs per message on these cores (reader + broker CPU)
    kc = svc.get("kafka_consume") or {}
    kafka_ms = None
    if kc.get("consumer_cpu_ms_per_message") and kc.get("messages"):
        kafka_ms = kc["consumer_cpu_ms_per_message"] + 1000 * (kc.get("broker_cpu_s") or 0.0) / kc["messages"]
    r = asap / (1000 * cores / (cost + kafka_ms)) if asap and cores and cost and kafka_ms else None
    ratios.append(_ratio("service alerts/s / machine limit with Kafka's CPU per message added (reader + broker)", r, "(comparison)", None))
    # CPU work per alert: independent of what else runs on a shared machine
    spent = (svc.get("asap") or {}).get("service_cpu_ms_per_alert")
    r = cost / spent if cost and spent else None
    ratios.append(_ratio("machine-limit CPU ms per alert / service CPU ms per alert (asap)", r, ">= 0.6 (comparison)",
                         None if r is None else r >= 0.6))
    paced = svc.get("paced") or {}
    p99, target = (paced.get("latency_ms") or {}).get("p99"), paced.get("p99_target_ms")
    r = p99 / target if p99 and target else None
    ratios.append(_ratio(f"paced p99 latency / (2 s + burst drain {paced.get('drain_s', '-')} s)", r, "<= 1",
                         None if r is None else r <= 1))
    loop = (lim.get("bare_loop") or {}).get("per_s")
    r = asap / loop if asap and loop else None
    ratios.append(_ratio("service alerts/s / bare-loop alerts/s", r, ">= 0.8", None if r is None else r >= 0.8))
    pre = [t["per_s"] for t in ((lim.get("preprocess_by_model") or {}).get(DIFFERENCE_STAMP_MODEL) or {}).values() if t.get("per_s")]
    r = max(pre) if pre else None
    ratios.append(_ratio(f"{DIFFERENCE_STAMP_MODEL} difference-stamp preprocessing, alerts/s on one core (best batch)", r, ">= 10,000",
                         None if r is None else r >= 10_000))
    dec, raw = (lim.get("decode") or {}).get("ms_per_item"), (lim.get("raw_gunzip_fits") or {}).get("ms_per_item")
    r = dec / raw if dec and raw else None
    ratios.append(_ratio("decode ms / raw gunzip+FITS ms per alert", r, "<= 1.5", None if r is None else r <= 1.5))
    inf = lim.get("inference", {})

    def rate(backend: str, size: str) -> float | None:
        return ((inf.get(backend) or {}).get("batches") or {}).get(size, {}).get("per_s")

    for size in ("1", "64", "256"):
        eager = rate("torch", size)
        for backend in ("onnxruntime", "openvino"):
            b = rate(backend, size)
            r = b / eager if b and eager else None
            ratios.append(_ratio(f"{backend} / torch eager, batch {size}", r, ">= 2", None if r is None else r >= 2))
        ort, ov = rate("onnxruntime", size), rate("openvino", size)
        r = ov / ort if ov and ort else None
        ratios.append(_ratio(f"openvino / onnxruntime, batch {size}", r, "(comparison)", None))
    trt = rate("tensorrt", "1024")
    ratios.append(_ratio("TensorRT batch 1024 alerts/s (GPU host)", trt, ">= 50,000", None if trt is None else trt >= 50_000))
    return ratios


def stage_costs(lim: Mapping[str, Any], svc: Mapping[str, Any], mode: str = "asap") -> dict[str, Any] | None:
    """Per stage, what the service spent per alert (``Metrics.stage_seconds`` / outputs: worker or
    thread seconds, summed over the decode workers and the score threads) beside the limit's
    one-core cost, and the stage with the most excess over its limit: the next bottleneck. Stage
    seconds are wall time (a thread waiting for a core counts), so on a loaded machine every
    stage swells; the ranking is what to read."""
    run = svc.get(mode) or {}
    machine = lim.get("machine_limit") or {}
    outputs, stages = run.get("outputs"), run.get("stage_seconds") or {}
    if not outputs or not stages or not machine:
        return None
    models = machine.get("models") or {}
    limit_ms = {
        "decode": machine.get("decode_ms") or 0.0,
        "preprocess": sum(m.get("share", 0) * m.get("preprocess_ms", 0) for m in models.values()),
        "infer": sum(m.get("share", 0) * m.get("inference_ms", 0) for m in models.values()),
    }
    rows = {}
    for stage, v in stages.items():
        ms = 1000 * float(v.get("sum", 0.0)) / outputs
        lim_ms = limit_ms.get(stage, 0.0)
        rows[stage] = {"service_ms_per_alert": round(ms, 4), "limit_ms_per_alert": round(lim_ms, 4),
                       "excess_ms": round(ms - lim_ms, 4), "ratio": round(ms / lim_ms, 2) if lim_ms else None}
    worst = max(rows, key=lambda k: rows[k]["excess_ms"])
    out: dict[str, Any] = {"mode": mode, "stages": rows, "next_bottleneck": worst,
                           "note": "stage seconds are wall time of the thread or worker doing it (including waiting for a core), "
                                   "per classified alert"}
    # CPU, which waiting does not inflate: the decode workers (reaped children) against decode, the
    # scoring process (preprocess, infer, Kafka, records, Redis, the hand-off) against the models
    # (the scoring process from the moment it was built: loading the models is not the stream's cost)
    usage = run.get("service_usage") or {}
    children, own, built = usage.get("children") or {}, usage.get("self") or {}, usage.get("self_at_ready") or {}
    if children and own:
        workers = 1000 * (children.get("user_s", 0.0) + children.get("system_s", 0.0)) / outputs
        scoring = 1000 * sum(own.get(k, 0.0) - built.get(k, 0.0) for k in ("user_s", "system_s")) / outputs
        models_ms = limit_ms["preprocess"] + limit_ms["infer"]
        split = {
            "decode_workers": {"service_cpu_ms_per_alert": round(workers, 4), "limit_ms_per_alert": round(limit_ms["decode"], 4),
                               "excess_ms": round(workers - limit_ms["decode"], 4)},
            "scoring_process": {"service_cpu_ms_per_alert": round(scoring, 4), "limit_ms_per_alert": round(models_ms, 4),
                                "excess_ms": round(scoring - models_ms, 4)},
        }
        out["cpu_split"] = split
        out["next_bottleneck_cpu"] = max(split, key=lambda k: split[k]["excess_ms"])
    return out


def run_member_counts(night: Any, args: argparse.Namespace, service_backend: str, device: str) -> list[dict[str, Any]]:
    """``--members``: each member count on the same night (benchmarks/members.py)."""
    from benchmarks.members import run_members, stack_or_cluster

    env = _engine_env(service_backend, _device_for(service_backend, device), models=args.models)
    runs = []
    with stack_or_cluster() as stack:
        for n in args.members:
            run = run_members(n, night.alerts, stack=stack, service_env=env, visits=args.visits,
                              visit_period_s=args.visit_period_s, visit_window_s=args.burst_window_s)
            log.info("members run", members=n, throughput_per_s=run["throughput_per_s"], cpu_ms_per_alert=run["cpu_ms_per_alert"],
                     latency_ms=run["latency_ms"])
            runs.append(run)
    return runs


def members_main(args: argparse.Namespace, argv: Sequence[str] | None, started: float) -> int:
    from benchmarks.members import members_markdown

    gpu = cuda_device()
    device = "cuda" if gpu else "cpu"
    service_backend = args.service_backend or ("tensorrt" if tensorrt_usable() else "onnxruntime")
    results: dict[str, Any] = {**_run_stamp(argv, started, gpu), "service_backend": service_backend,
                               "models": list(args.models) or "every registered model"}
    night = build_night(args.alerts, **({"source": args.source} if args.source else {}))
    results["night"] = night.describe()
    results["runs"] = run_member_counts(night, args, service_backend, device)
    results["notes"] = [
        "latency: Kafka timestamp of the classified record minus that of its input (its send time); "
        "throughput: outputs / (last output - first input sent)",
        "CPU ms per alert: every member's process tree (decode workers included), from every member ready to the end; "
        "the broker's and Redis's CPU apart (cpu_seconds)",
        f"members share this machine's {results['machine']['cpu_cores']} cores with the broker and Redis: "
        "more members than cores add rebalancing and contention, not capacity",
        "visit_size_at_60s_p98_derived: on paper, throughput x 60 s / 0.98 (not measured)",
    ]
    results["load_average_end"] = load_average()
    results["elapsed_s"] = round(time.time() - started, 1)
    out_dir = args.out or (RESULTS / host_label() / "members")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "members.json").write_text(json.dumps(results, indent=2))
    md = members_markdown(results)
    (out_dir / "members.md").write_text(md)
    print(md)
    print("results:", out_dir / "members.json", out_dir / "members.md")
    return 0


def _run_stamp(argv: Sequence[str] | None, started: float, gpu: str | None) -> dict[str, Any]:
    """What every results file starts with: the command, when, on which machine and device."""
    return {
        "command": "python -m benchmarks.night " + " ".join(sys.argv[1:] if argv is None else argv),
        "started_utc": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_stamp(),
        "device": f"cuda ({gpu})" if gpu else "cpu",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    if args.rubin_night or args.break_point:
        from benchmarks.rubin_main import rubin_main

        return rubin_main(args, argv, started)
    if args.members:
        return members_main(args, argv, started)
    gpu = cuda_device()
    device = "cuda" if gpu else "cpu"
    trt = tensorrt_usable()
    backends = args.backends or (list(CPU_BACKENDS) + (["tensorrt"] if trt else []))
    service_backend = args.service_backend or ("tensorrt" if trt else "onnxruntime")
    results: dict[str, Any] = {
        **_run_stamp(argv, started, gpu),
        "tensorrt": trt,
        "service_backend": service_backend,
        "backends": backends,
        "quick": args.quick,
        "models": list(args.models) or "every registered model",
    }
    try:
        import torch

        results["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    night = build_night(args.alerts, exposures=args.exposures, **({"source": args.source} if args.source else {}))
    results["night"] = night.describe()
    notes: list[str] = []
    if not gpu:
        notes.append("no CUDA device: TensorRT figures are not measured on this machine")
    lim, lim_notes = measure_limits(night, args, backends, service_backend, device)
    results["limits"] = lim
    results["untrained_models"] = lim.get("untrained_models")
    notes += lim_notes
    svc: dict[str, Any] = {}
    if not args.skip_service:
        # on the CPU, per model the fastest backend measured at the service's engine batch, unless one was named
        fastest = fastest_backends(lim)
        results["fastest_backend_by_model"] = fastest
        results["service_infer_batch"] = CPU_INFER_BATCH if device == "cpu" else "the model's max batch"
        model_backends = ({} if args.service_backend or device != "cpu"
                          else {m: b for m, b in fastest.items() if b != service_backend})
        svc, svc_notes = run_services(night, args, service_backend, device, (lim.get("bare_loop") or {}).get("per_s"),
                                      model_backends)
        notes += svc_notes
    results["service"] = svc
    results["ratios"] = compute_ratios(lim, svc)
    results["stage_costs"] = stage_costs(lim, svc)
    results["notes"] = notes
    results["load_average_end"] = load_average()
    results["elapsed_s"] = round(time.time() - started, 1)
    out_dir = args.out or (RESULTS / host_label() / ("quick" if args.quick else "") / ("models-" + "-".join(args.models) if args.models else ""))
    paths = write_results(results, out_dir)
    print((out_dir / "night.md").read_text())
    print("results:", ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
