"""``python -m benchmarks.night --rubin-night`` and ``--break-point``: Rubin-shaped nights through N members.

``--rubin-night``: real LSSTCam alerts (:data:`benchmarks.night_data.LSSTCAM_SOURCES`) multiplied
with fresh ids, sent as the visits :func:`benchmarks.rubin_night.draw_night` draws (sizes divided
by ``--scale``, at Rubin's cadence), through each ``--members`` count (:func:`benchmarks.members.run_members`),
each count on a fresh embedded stack.

``--break-point 6000,9000,...``: for each member count, single visits of those sizes, smallest
first, each on a fresh embedded stack (the broker keeps every message in memory), until the share
published within 60 s falls below 98%. The night is built once (the largest size); each visit runs
on fresh topics and a fresh Redis prefix, so the same alerts are new to it.

Both write ``rubin.{json,md}`` (``--out``, default ``benchmarks/results/<machine>/rubin-night/`` or
``.../rubin-break-point/``), with the full-night derivation of
:func:`benchmarks.rubin_night.rubin_full_night_on_paper` from the measured CPU ms per alert and drain rate.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from benchmarks.machine import cuda_device, host_label, load_average, tensorrt_usable
from benchmarks.members import OBJECTIVE_S, run_members, stack_or_cluster
from benchmarks.night_data import LSSTCAM_SOURCES, build_night
from benchmarks.rubin_night import draw_night, rubin_full_night_on_paper, visit_summary

__all__ = ["rubin_main", "rubin_markdown", "full_night_from_runs"]

log = structlog.get_logger(__name__)

#: the share of a visit that must be public within 60 s
OBJECTIVE_SHARE = 0.98


def rubin_main(args: argparse.Namespace, argv: Sequence[str] | None, started: float) -> int:
    from benchmarks.night import RESULTS, _device_for, _engine_env, _run_stamp

    gpu = cuda_device()
    device = "cuda" if gpu else "cpu"
    service_backend = args.service_backend or ("tensorrt" if tensorrt_usable() else "onnxruntime")
    env = _engine_env(service_backend, _device_for(service_backend, device), models=args.models)
    sources = [args.source] if args.source else list(LSSTCAM_SOURCES)
    results: dict[str, Any] = {**_run_stamp(argv, started, gpu), "service_backend": service_backend,
                               "models": list(args.models) or "every registered model (Rubin alerts: rubin_realbogus)",
                               "sources": [str(s) for s in sources], "visit_window_s": args.burst_window_s}
    if args.break_point:
        results["mode"] = "break-point"
        results.update(_break_point(args, sources, env))
    else:
        results["mode"] = "rubin-night"
        results.update(_night(args, sources, env))
    paper = full_night_from_runs(results["runs"], results["machine"]["cpu_cores"])
    if paper is not None:
        results["full_rubin_night_on_paper"] = paper
    results["load_average_end"] = load_average()
    results["elapsed_s"] = round(time.time() - started, 1)
    out_dir = args.out or (RESULTS / host_label() / ("rubin-break-point" if args.break_point else "rubin-night"))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rubin.json").write_text(json.dumps(results, indent=2))
    md = rubin_markdown(results)
    (out_dir / "rubin.md").write_text(md)
    print(md)
    print("results:", out_dir / "rubin.json", out_dir / "rubin.md")
    return 0


def full_night_from_runs(runs: Sequence[Mapping[str, Any]], cores: int) -> dict[str, Any] | None:
    """:func:`benchmarks.rubin_night.rubin_full_night_on_paper` from the 1-member runs: their CPU ms
    per alert over all their alerts, and the best drain rate of any of their visits (the largest
    visits keep the member busiest: the closest to its capacity)."""
    ones = [r for r in runs if r["members"] == 1 and r.get("cpu_ms_per_alert") and r.get("outputs")]
    if not ones:
        return None
    outputs = sum(r["outputs"] for r in ones)
    cpu_ms = round(sum(r["cpu_ms_per_alert"] * r["outputs"] for r in ones) / outputs, 3)
    drain = max((v.get("drain_per_s") or 0 for r in ones for v in r["latency_ms_by_visit"]), default=0) or None
    return rubin_full_night_on_paper(cpu_ms, drain, cores)


def _night(args: argparse.Namespace, sources: Sequence[Any], env: Mapping[str, str]) -> dict[str, Any]:
    plan, about = draw_night(args.visits, args.visit_sizes, scale=args.scale, cadence_s=args.cadence_s, seed=args.seed)
    night = build_night(about["alerts"], source=sources, surveys=("rubin",))
    runs = []
    for n in args.members:
        with stack_or_cluster() as stack:  # fresh per member count: the embedded broker holds every message in memory
            run = run_members(n, night.alerts, stack=stack, service_env=env, schedule=[(v.size, v.start_s) for v in plan],
                              visit_window_s=args.burst_window_s)
        run["visit_table"] = visit_summary(plan, run["latency_ms_by_visit"])
        run["visits_meeting_objective"] = sum(1 for v in run["latency_ms_by_visit"] if (v.get("share_within_60s") or 0) >= OBJECTIVE_SHARE)
        log.info("rubin night run", members=n, throughput_per_s=run["throughput_per_s"], cpu_ms_per_alert=run["cpu_ms_per_alert"],
                 latency_ms=run["latency_ms"])
        runs.append(run)
    return {"night": night.describe(), "plan": about, "runs": runs}


def _break_point(args: argparse.Namespace, sources: Sequence[Any], env: Mapping[str, str]) -> dict[str, Any]:
    sizes = args.break_point
    night = build_night(max(sizes), source=sources, surveys=("rubin",))
    runs, breaks = [], {}
    for n in args.members:
        broke = None
        for size in sizes:
            with stack_or_cluster() as stack:  # fresh: the embedded broker holds every message in memory
                run = run_members(n, night.alerts, stack=stack, service_env=env, schedule=[(size, 0.0)],
                                  visit_window_s=args.burst_window_s)
            share = run["latency_ms"].get(f"share_within_{OBJECTIVE_S:g}s") or 0.0
            run["meets_objective"] = bool(run.get("complete")) and share >= OBJECTIVE_SHARE
            log.info("break-point step", members=n, size=size, share_within_60s=share, p98_ms=run["latency_ms"]["p98"],
                     drain_per_s=run["latency_ms_by_visit"][0].get("drain_per_s"))
            runs.append(run)
            if not run["meets_objective"]:
                broke = size
                break
        passed = [r["visit_size"] for r in runs if r["members"] == n and r["meets_objective"]]
        breaks[str(n)] = {"breaks_at": broke, "largest_met": max(passed) if passed else None,
                          "note": None if broke else "no size tried broke the objective"}
    return {"night": night.describe(), "sizes_tried": sizes, "break_point": breaks, "runs": runs}


def rubin_markdown(results: Mapping[str, Any]) -> str:
    from benchmarks.members import members_markdown

    lines = [members_markdown(results).replace("# Members benchmark", f"# Rubin {results['mode']}", 1), ""]
    plan = results.get("plan")
    if plan:
        lines += [f"Visit sizes: `{plan['visit_sizes']}` (mean {plan['mean_alerts_per_visit_unscaled']:,} alerts per visit unscaled), "
                  f"divided by scale {plan['scale']:g}; gaps uniform in {plan['cadence_s']} s; seed {plan['seed']}"
                  + (f"; no peak drawn, visit {plan['forced_peak'] + 1} made one" if plan.get("forced_peak") is not None else "")
                  + f". Sizes sent: {plan['sizes']} ({plan['alerts']:,} alerts).", ""]
        for run in results["runs"]:
            lines += [f"Per visit, {run['members']} member(s) ({run['visits_meeting_objective']} of {run['visits']} visits "
                      f"with >= 98% within 60 s):", "",
                      "| visit | size (unscaled) | start s | p50 / p95 / p98 / p99 s | within 60 s | drain alerts/s |",
                      "|---:|---|---:|---|---:|---:|"]
            for v in run["visit_table"]:
                q = " / ".join("-" if v.get(k) is None else f"{v[k] / 1000:.1f}" for k in ("p50", "p95", "p98", "p99"))
                lines.append(f"| {v['visit']} | {v['size']:,} ({v['unscaled_size']:,}{', peak' if v['peak'] else ''}) | {v['start_s']:.0f} "
                             f"| {q} | {v.get('share_within_60s')} | {v.get('drain_per_s') or '-'} |")
            lines.append("")
    if results.get("break_point"):
        lines += ["Break point (single visits, smallest first, each on a fresh stack):", ""]
        for n, b in results["break_point"].items():
            lines.append(f"- {n} member(s): largest visit meeting 98% within 60 s: {b['largest_met']}; breaks at: {b['breaks_at']}"
                         + (f" ({b['note']})" if b.get("note") else ""))
        lines.append("")
    paper = results.get("full_rubin_night_on_paper")
    if paper:
        i = paper["inputs"]
        lines += ["A full Rubin night on this CPU, on paper (from the 1-member runs' CPU ms per alert and best visit drain rate):", "",
                  f"- {i['night_alerts']:,} alerts over {i['visits']:,} visits every {i['cadence_s']:g} s: mean {paper['mean_rate_per_s']} alerts/s, "
                  f"{paper['core_hours_per_night']} core-hours at {i['cpu_ms_per_alert']} CPU ms per alert, "
                  f"{paper['cores_sustained']} cores busy all night;",
                  f"- a {i['peak_visit']:,}-alert peak, 98% within 60 s: {paper['peak_drain_rate_per_s']} alerts/s, "
                  f"{paper['cores_for_peak']} cores at that CPU cost: {paper['members_for_peak_cpu']} members of {i['cores_per_member']} cores "
                  f"each kept {i['member_utilisation']:.0%} busy ({paper['cores_for_peak_cpu']} cores)"
                  + (f"; at the drain measured here, {i['drain_per_s_per_member']} alerts/s per member (bounded by this shared machine's "
                     f"share of its cores): {paper['members_for_peak']} members" if "members_for_peak" in paper else "")
                  + ".", ""]
    return "\n".join(lines)
