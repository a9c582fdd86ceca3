"""Results of a night: the JSON file, the Markdown table and the PNG plot (throughput, latency, memory over the run)."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_results", "markdown", "plot", "timeline"]


def timeline(latencies: Sequence[tuple[int, int]], t0_ms: float, bin_s: float = 1.0) -> dict[str, list[float]]:
    """Per ``bin_s`` bin of output time since ``t0_ms``: outputs/s and latency p50/p95 (ms)."""
    if not latencies:
        return {"t_s": [], "per_s": [], "p50_ms": [], "p95_ms": []}
    ts = np.asarray([t for t, _ in latencies], dtype=float)
    lat = np.asarray([latency for _, latency in latencies], dtype=float)
    bins = np.floor((ts - t0_ms) / 1000 / bin_s).astype(int)
    bins -= min(0, bins.min())
    out: dict[str, list[float]] = {"t_s": [], "per_s": [], "p50_ms": [], "p95_ms": []}
    for b in range(bins.max() + 1):
        sel = lat[bins == b]
        out["t_s"].append(round(b * bin_s, 2))
        out["per_s"].append(round(sel.size / bin_s, 1))
        out["p50_ms"].append(round(float(np.percentile(sel, 50)), 1) if sel.size else None)
        out["p95_ms"].append(round(float(np.percentile(sel, 95)), 1) if sel.size else None)
    return out


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(results: Mapping[str, Any]) -> str:
    """A human-readable summary of ``results`` (the dict written to JSON)."""
    m, night, lim, svc, ratios = results["machine"], results["night"], results["limits"], results.get("service", {}), results["ratios"]
    lines = [
        f"# Night benchmark: {night['alerts']:,} alerts",
        "",
        f"Command: `{results['command']}`  ",
        f"Started {results['started_utc']}, took {results['elapsed_s']:.0f} s. Machine: {m['cpu_model']}, {m['cpu_cores']} cores "
        f"({m['memory_gib']} GiB), device **{results['device']}**, "
        f"load average at start {m['load_average_1_5_15']}, at end {results.get('load_average_end')}.  ",
        f"Git {m['git_commit']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".  ",
        f"Night: {night['alerts']:,} alerts ({night['by_survey']}) = {night['original_packets']} bundled real packets x up to "
        f"{night['copies_per_packet']} copies with fresh ids, {night['alert_bytes'] / 2**20:,.0f} MiB. "
        f"Exposures: {night['exposure_note'] or 'none'}. Models untrained: {results.get('untrained_models')}. "
        f"Alert models run: {results.get('models', 'every registered model')}.",
        "",
        "## Ratios (the project's goals)",
        "",
        "| ratio | value | goal | met |",
        "|---|---|---|---|",
    ]
    for r in ratios:
        lines.append(f"| {r['name']} | {_fmt(r['value'], 2)} | {r['goal']} | {'yes' if r['met'] else 'no' if r['met'] is not None else '-'} |")
    lines += ["", f"## Limits (one process, no Kafka, no Redis; first {lim['sample_alerts']:,} alerts)", "",
              "| stage | alerts/s | ms per alert |", "|---|---|---|"]
    for key, label in (("decode", "bare decode (decode_values)"), ("raw_gunzip_fits", "raw gunzip + astropy FITS of the cutouts"),
                       ("preprocess", f"preprocess, first model ({lim.get('preprocess_backend')}, batch "
                                      f"{(lim.get('preprocess') or {}).get('batch', lim.get('batch_size'))})"),
                       ("bare_loop", f"bare loop decode+preprocess+infer ({lim.get('loop_backend')}, batch {lim.get('batch_size')})")):
        t = lim.get(key)
        if t:
            lines.append(f"| {label} | {_fmt(t['per_s'])} | {_fmt(t['ms_per_item'], 3)} |")
    pre = lim.get("preprocess_by_model") or {}
    pre_sizes = sorted({int(b) for by_batch in pre.values() for b in by_batch})
    if pre:
        lines += ["", "### Preprocessing per model (alerts/s on one core; ms per alert)", "",
                  "| model | " + " | ".join(f"batch {b}" for b in pre_sizes) + " |", "|---|" + "---|" * len(pre_sizes)]
        for model, by_batch in pre.items():
            cells = [f"{_fmt(t['per_s'], 0)} ({_fmt(t['ms_per_item'], 3)})" if (t := by_batch.get(str(b))) else "-" for b in pre_sizes]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "### Inference alone, per model (alerts/s, one engine thread; p50 ms per batch)", ""]
    inf = lim.get("inference", {})
    sizes = sorted({int(s) for b in inf.values() if isinstance(b, Mapping)
                    for m in (b.get("models") or {}).values() for s in m.get("batches", {})})
    if sizes:
        lines += ["| model | backend | device | " + " | ".join(f"batch {s}" for s in sizes) + " |",
                  "|---|---|---|" + "---|" * len(sizes)]
        models = sorted({m for b in inf.values() if isinstance(b, Mapping) for m in (b.get("models") or {})})
        for model in models:
            for backend, row in inf.items():
                m = (row.get("models") or {}).get(model)
                if not m or "batches" not in m:
                    continue
                cells = []
                for s in sizes:
                    t = m["batches"].get(str(s))
                    cells.append(f"{_fmt(t['per_s'], 0)} ({_fmt(t['call_p50_ms'], 2)} ms)" if t else "-")
                lines.append(f"| {model} | {backend} | {m.get('device')} | " + " | ".join(cells) + " |")
        for backend, row in inf.items():
            if "error" in row:
                lines.append(f"\n{backend}: not run ({row['error']})")
    limit = lim.get("machine_limit")
    if limit:
        lines += ["", f"### The machine's limit: {_fmt(limit.get('alerts_per_s'))} alerts/s", "",
                  f"One alert costs {_fmt(limit['ms_per_alert_one_core'], 3)} CPU ms on one core: decode "
                  f"{_fmt(limit['decode_ms'], 3)} ms + each model's preprocess and fastest inference, weighted by the share "
                  f"of alerts it scores; spread over {limit['cores']} usable cores.", "",
                  "| model | share of alerts | preprocess ms | fastest inference | inference ms | ms per alert |", "|---|---|---|---|---|---|"]
        for model, row in sorted(limit.get("models", {}).items()):
            if "error" in row:
                lines.append(f"| {model} | - | - | - | - | {row['error']} |")
                continue
            lines.append(f"| {model} | {_fmt(row['share'], 3)} | {_fmt(row['preprocess_ms'], 3)} | {row['best_backend']} batch "
                         f"{row['best_batch']} | {_fmt(row['inference_ms'], 3)} | {_fmt(row['ms_per_alert'], 3)} |")
    if results.get("fastest_backend_by_model"):
        lines += ["", f"Fastest backend per model at batch {results.get('service_infer_batch', '-')} (what the service run uses): "
                  + ", ".join(f"{m} {b}" for m, b in results["fastest_backend_by_model"].items()) + "."]
    if lim.get("exposures"):
        lines += ["", "### Raw exposures (seconds per exposure)", "", "```", json.dumps(lim["exposures"], indent=1), "```"]
    kc = svc.get("kafka_consume") or {}
    if kc:
        lines += ["", "### Kafka alone (embedded broker on the same cores)", "",
                  f"The night published to a fresh topic and read back by one consumer with the service's consumer settings, "
                  f"{kc.get('batch')} at a time, doing nothing else: {_fmt(kc.get('per_s'))} messages/s; the reader's CPU "
                  f"{_fmt(kc.get('consumer_cpu_ms_per_message'), 3)} ms per message, the broker's {_fmt(kc.get('broker_cpu_s'), 2)} s "
                  "over the read. The machine's limit leaves this out: the service pays it on the same cores."]
    backends = svc.get("model_backends") or {}
    lines += ["", "## The real service (embedded Tansu broker + Redis, 4 partitions)", "",
              f"Backend {svc.get('backend')}" + (f", per model: {', '.join(f'{m} {b}' for m, b in sorted(backends.items()))}"
                                                 if backends else "") + f"; device {svc.get('device')}; default batch settings.", "",
              "| run | alerts | alerts/s | steady alerts/s | latency p50 / p95 / p99 ms | service CPU s (cores busy) | "
              "service CPU ms per alert | broker CPU s | RSS MiB start / 25% / 50% / 75% / end / peak |",
              "|---|---|---|---|---|---|---|---|---|"]
    for mode, run in svc.items():
        if not isinstance(run, Mapping) or "latency_ms" not in run:
            continue
        lat, rss, cpu, busy = run["latency_ms"], run["service_rss_mib"], run["cpu_seconds"], run["cpu_cores_busy"]
        label = mode if mode != "paced" else (
            f"paced ({run['plan'].get('bursts')} bursts of {run['plan'].get('size')} in {run['plan'].get('window_s')} s "
            f"every {run['plan'].get('period_s')} s)")
        rss_points = " / ".join(_fmt(rss[k], 0) for k in ("start", "at_25pct", "at_50pct", "at_75pct", "end", "peak_vmhwm"))
        lines.append(f"| {label} | {run['outputs']:,}/{run['inputs']:,} | {_fmt(run['throughput_per_s'])} | "
                     f"{_fmt(run['steady_throughput_per_s'])} | "
                     f"{_fmt(lat['p50'], 0)} / {_fmt(lat['p95'], 0)} / {_fmt(lat['p99'], 0)} | "
                     f"{_fmt(cpu.get('service'))} ({_fmt(busy.get('service'), 2)}) | "
                     f"{_fmt(run.get('service_cpu_ms_per_alert'), 2)} | "
                     f"{_fmt(cpu.get('broker'))} | {rss_points} |")
    paced = svc.get("paced")
    if isinstance(paced, Mapping) and paced.get("drain_s") is not None:
        lat = paced.get("latency_ms") or {}
        lines.append(f"\nPaced bursts: {paced['plan'].get('size'):,} alerts arrive within {paced['plan'].get('window_s')} s; at the "
                     f"measured capacity ({_fmt(paced.get('capacity_used_for_plan_per_s'))} alerts/s) a burst drains in "
                     f"{_fmt(paced['drain_s'], 2)} s, so the p99 target is 2 s + drain = {_fmt(paced['p99_target_ms'] / 1000, 2)} s; "
                     f"measured p50 / p95 / p99 = {_fmt((lat.get('p50') or 0) / 1000, 2)} / {_fmt((lat.get('p95') or 0) / 1000, 2)} / "
                     f"{_fmt((lat.get('p99') or 0) / 1000, 2)} s.")
    for mode, run in svc.items():
        if isinstance(run, Mapping) and run.get("stage_seconds"):
            stages = ", ".join(f"{k} {v.get('sum', 0):.2f} s" for k, v in sorted(run["stage_seconds"].items()))
            lines.append(f"\nPer-stage time in the service ({mode}, summed over batches): {stages}.")
    costs = results.get("stage_costs")
    if isinstance(costs, Mapping):
        lines += ["", f"### Stage by stage against the limit ({costs['mode']}): the next bottleneck is **{costs['next_bottleneck']}**", "",
                  "| stage | service ms per alert | limit ms per alert (one core) | excess ms | service / limit |", "|---|---|---|---|---|"]
        for stage, row in sorted(costs["stages"].items(), key=lambda kv: -kv[1]["excess_ms"]):
            lines.append(f"| {stage} | {_fmt(row['service_ms_per_alert'], 3)} | {_fmt(row['limit_ms_per_alert'], 3)} | "
                         f"{_fmt(row['excess_ms'], 3)} | {_fmt(row['ratio'], 2)} |")
        lines.append(f"\n{costs['note']}.")
        split = costs.get("cpu_split")
        if isinstance(split, Mapping):
            lines += ["", f"CPU, which waiting for a core does not inflate (getrusage of the service process and its reaped decode "
                          f"workers): the most excess is in the **{costs['next_bottleneck_cpu']}**.", "",
                      "| part | service CPU ms per alert | limit ms per alert | excess ms |", "|---|---|---|---|"]
            for part, row in split.items():
                lines.append(f"| {part} | {_fmt(row['service_cpu_ms_per_alert'], 3)} | {_fmt(row['limit_ms_per_alert'], 3)} | "
                             f"{_fmt(row['excess_ms'], 3)} |")
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def plot(results: Mapping[str, Any], path: Path) -> None:
    """Throughput and latency over each service run, and the service's RSS, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {k: v for k, v in results.get("service", {}).items() if isinstance(v, Mapping) and "timeline" in v}
    fig, axes = plt.subplots(3, max(1, len(runs)), figsize=(6.5 * max(1, len(runs)), 9), squeeze=False)
    for col, (mode, run) in enumerate(runs.items()):
        tl = run["timeline"]
        ax = axes[0][col]
        ax.bar(tl["t_s"], tl["per_s"], width=1.0, color="tab:blue")
        ax.set_title(f"{mode}: classified alerts per second")
        ax.set_ylabel("alerts/s")
        ax = axes[1][col]
        ax.plot(tl["t_s"], [np.nan if v is None else v for v in tl["p50_ms"]], "o-", ms=3, label="p50")
        ax.plot(tl["t_s"], [np.nan if v is None else v for v in tl["p95_ms"]], "o-", ms=3, label="p95")
        ax.set_yscale("log")
        ax.set_ylabel("end-to-end latency (ms)")
        ax.legend()
        ax = axes[2][col]
        mem = run.get("memory_timeline", {})
        ax.plot(mem.get("t_s", []), mem.get("service_rss_mib", []), label="service RSS")
        ax.plot(mem.get("t_s", []), mem.get("service_tree_rss_mib", []), label="service + decode workers")
        ax.set_ylabel("MiB")
        ax.set_xlabel("seconds since the service was ready")
        ax.legend()
    fig.suptitle(f"{results['night']['alerts']:,} alerts on {results['machine']['cpu_model']} ({results['device']}), "
                 f"git {results['machine']['git_commit'][:12]}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(results: Mapping[str, Any], out_dir: Path, stem: str = "night") -> dict[str, Path]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` in ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "plot": out_dir / f"{stem}.png"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str))
    paths["markdown"].write_text(markdown(results))
    plot(results, paths["plot"])
    return paths
