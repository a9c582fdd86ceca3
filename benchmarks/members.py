"""``python -m benchmarks.night --members N [N ...]``: N service processes in one consumer group.

For each member count N, on fresh topics (``max(4, 2 x N)`` partitions) and a fresh Redis prefix:
N members (:mod:`benchmarks.service_worker`, each its own process and metrics port) join one
group, the first alone (it fills the engine cache), the rest once it is ready; when every member
answers ``/readyz`` (partitions assigned, Redis up) the night is sent as Rubin-shaped visits
(``--visits`` visits of ``alerts / visits`` alerts, each within ``--burst-window-s``, one every
``--visit-period-s``), and a reader follows the classified topic until every input is accounted
for. Each input's Kafka timestamp is its send time, so an alert's latency is the time from its
input timestamp to its classified record's (what ``sc_end_to_end_latency_seconds`` measures,
to the broker's acknowledgement).

Reported per N: throughput (outputs / (last output - first input sent)), CPU ms per alert (every
member's process tree, from psutil; the broker's and Redis's apart), latency p50 / p95 / p98 /
p99 over the night and per visit, the share published within 60 s of the input timestamp, and
per member what it consumed and published. The embedded stack runs them unless
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` name a cluster (then with ``cooperative-sticky``).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import structlog

from benchmarks.night_data import NightMessage
from benchmarks.service_run import REPO, _Publisher, _Reader, _Sampler, _wait_ready, bench_topics, member_env

__all__ = ["latency_figures", "visit_of", "run_members", "members_markdown", "OBJECTIVE_S", "stack_or_cluster", "spawn_member",
           "stop_members", "send_visit", "wait_all_ready"]

log = structlog.get_logger(__name__)

#: Rubin's latency objective: 98% of a visit's alerts public within 60 s.
OBJECTIVE_S = 60.0


def latency_figures(latencies_ms: Sequence[float], objective_s: float = OBJECTIVE_S) -> dict[str, float | int | None]:
    """p50 / p95 / p98 / p99 / max (ms), and the share of alerts within ``objective_s``."""
    lat = np.asarray(latencies_ms, dtype=float)
    if lat.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p98": None, "p99": None, "max": None, f"share_within_{objective_s:g}s": None}
    out: dict[str, float | int | None] = {"n": int(lat.size)}
    for q in (50, 95, 98, 99):
        out[f"p{q}"] = round(float(np.percentile(lat, q)), 1)
    out["max"] = round(float(lat.max()), 1)
    out[f"share_within_{objective_s:g}s"] = round(float(np.mean(lat <= 1000 * objective_s)), 4)
    return out


def visit_of(sent_ms: int, visit_starts_ms: Sequence[int]) -> int:
    """The visit an input belongs to: the last visit whose sending had started when it was sent."""
    index = int(np.searchsorted(np.asarray(visit_starts_ms), sent_ms, side="right")) - 1
    return max(index, 0)


@contextlib.contextmanager
def stack_or_cluster() -> Iterator[Any]:
    """The cluster named by ``KAFKA_BOOTSTRAP_SERVERS`` + ``REDIS_URL``, else the embedded stack."""
    bootstrap, redis_url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    if bootstrap and redis_url:
        yield SimpleNamespace(bootstrap_servers=bootstrap, redis_url=redis_url, embedded=False)
        return
    from stream.stack import EmbeddedStack

    with EmbeddedStack() as stack:
        yield SimpleNamespace(bootstrap_servers=stack.bootstrap_servers, redis_url=stack.redis_url, embedded=True)


def run_members(
    members: int, messages: Sequence[NightMessage], *, stack: Any, service_env: Mapping[str, str], visits: int = 1,
    visit_period_s: float = 30.0, visit_window_s: float = 3.0, timeout_s: float = 900.0, work_dir: Path | None = None,
    schedule: Sequence[tuple[int, float]] | None = None,
) -> dict[str, Any]:
    """One night through ``members`` members of one group; the figures described in the module doc.

    ``schedule``: (size, start s after the first visit) per visit, in order (a Rubin-shaped night,
    :mod:`benchmarks.rubin_night`); by default ``visits`` visits of equal size every ``visit_period_s``.
    """
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, create_topics, free_ports

    if schedule is None:
        if visits < 1:
            raise ValueError("visits must be >= 1")
        size = -(-len(messages) // visits)
        schedule = [(max(0, min(size, len(messages) - v * size)), v * visit_period_s) for v in range(visits)]
    visits = len(schedule)
    if members < 1 or visits < 1 or sum(n for n, _ in schedule) > len(messages):
        raise ValueError("members and visits must be >= 1, and the schedule within the night's messages")
    name = f"bench-members{members}-{uuid.uuid4().hex[:6]}"
    topics = bench_topics(name)
    partitions = max(4, 2 * members)
    create_topics(stack.bootstrap_servers, list(topics.values()), partitions=partitions)
    embedded = getattr(stack, "embedded", True)
    strategy = EMBEDDED_ASSIGNMENT_STRATEGY if embedded else "cooperative-sticky"
    base = {**member_env(stack, name, topics, strategy), **service_env}
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-members{members}-", dir=work_dir))
    procs: list[tuple[subprocess.Popen, int, Path, _Sampler]] = []
    publisher = _Publisher(stack.bootstrap_servers, topics["in"])
    reader = None
    sent_alerts = sum(n for n, _ in schedule)
    visit_starts_ms: list[int] = []
    out: dict[str, Any] = {"members": members, "partitions": partitions, "inputs": sent_alerts, "visits": visits,
                           "visit_size": max(n for n, _ in schedule), "visit_sizes": [n for n, _ in schedule],
                           "visit_starts_s": [t for _, t in schedule], "visit_window_s": visit_window_s,
                           "assignment_strategy": base["SC__KAFKA__ASSIGNMENT_STRATEGY"], "embedded": embedded}
    try:
        for i, port in enumerate(free_ports(members)):
            proc = spawn_member({**base, "SC__OBSERVABILITY__METRICS_PORT": str(port)}, tmp, i)
            sampler = _Sampler(proc.pid)
            sampler.start()
            procs.append((proc, port, tmp / f"summary{i}.json", sampler))
            if i == 0:  # the first fills the engine cache; the others load from it
                _wait_ready(port, proc, timeout_s=300)
        wait_all_ready([(p, port) for p, port, _, _ in procs], timeout_s=300)
        ready = time.time()
        reader = _Reader(stack.bootstrap_servers, topics["out"], topics["dlq"], publisher.sent_ms, expect=sent_alerts)
        reader.start()
        started = time.time()
        first = 0
        for v, (n, start_s) in enumerate(schedule):
            time.sleep(max(0.0, started + start_s - time.time()))
            visit_starts_ms.append(int(time.time() * 1000))
            burst = list(messages[first:first + n])
            first += n
            send_visit(publisher, burst, visit_window_s)
            log.info("visit sent", members=members, visit=v + 1, of=visits, size=len(burst))
        publisher.flush()
        reader.done.wait(timeout_s)
        out["complete"] = reader.done.is_set()
    finally:
        if reader is not None:
            reader.stop()
        stop_members([proc for proc, _, _, _ in procs])
        for _, _, _, sampler in procs:
            sampler.stop()

    latencies = reader.latencies() if reader is not None else []
    out["outputs"], out["dead_letters"] = (len(reader.outputs), reader.dead) if reader is not None else (0, 0)
    out_ts = [t for t, _ in latencies]
    first_sent = min(publisher.sent_ms.values()) if publisher.sent_ms else None
    span_s = (max(out_ts) - first_sent) / 1000 if out_ts and first_sent else None
    out["throughput_per_s"] = round(out["outputs"] / span_s, 1) if span_s else None
    out["latency_ms"] = latency_figures([lat for _, lat in latencies])
    sent_by_output = _sent_times(reader, publisher) if reader is not None else []
    per_visit: dict[int, list[float]] = {}
    for sent, lat in sent_by_output:
        per_visit.setdefault(visit_of(sent, visit_starts_ms), []).append(lat)
    out["latency_ms_by_visit"] = [latency_figures(per_visit.get(v, [])) for v in range(visits)]
    # a visit's drain rate: its outputs / (its last output - its first send)
    spans: dict[int, list[float]] = {}
    for sent, lat in sent_by_output:
        v = visit_of(sent, visit_starts_ms)
        lo_hi = spans.setdefault(v, [float(sent), sent + lat])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], sent), max(lo_hi[1], sent + lat)
    for v, figures in enumerate(out["latency_ms_by_visit"]):
        lo, hi = spans.get(v, (0.0, 0.0))
        figures["drain_per_s"] = round(1000 * int(figures["n"] or 0) / (hi - lo), 1) if hi > lo else None
    # CPU from the moment every member was ready: start-up and model loading are not the stream's cost
    cpu_s = 0.0
    broker_redis: dict[str, float] = {}
    per_member = []
    for i, (_, _, summary_path, sampler) in enumerate(procs):
        running = [x for x in sampler.samples if x["t"] >= ready] or sampler.samples
        member_cpu = (running[-1]["service_cpu"] - running[0]["service_cpu"]) if len(running) > 1 else 0.0
        cpu_s += member_cpu
        if i == 0 and len(running) > 1:
            broker_redis = {role: round(running[-1].get(f"{role}_cpu", 0.0) - running[0].get(f"{role}_cpu", 0.0), 2)
                            for role in ("broker", "redis")}
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        per_member.append({"cpu_s": round(member_cpu, 2), **summary.get("totals", {}),
                           # where a member's time went: decode (its workers), preprocess, infer, publish, ...
                           "stage_seconds": {k: round(v.get("sum", 0.0), 2) for k, v in (summary.get("stage_seconds") or {}).items()},
                           "decode_workers_cpu_s": round(sum((summary.get("usage_children") or {}).get(k, 0.0)
                                                             for k in ("user_s", "system_s")), 2)})
    out["per_member"] = per_member
    out["cpu_seconds"] = {"members": round(cpu_s, 2), **(broker_redis if embedded else {})}
    out["cpu_ms_per_alert"] = round(1000 * cpu_s / out["outputs"], 3) if out["outputs"] else None
    out["published"] = sum(m.get("published", 0) for m in per_member)
    out["balanced"] = bool(per_member) and all(m.get("balanced") for m in per_member)
    # On paper, from the measured throughput: the visit size V whose 98th percentile alert waits
    # 60 s to be drained (0.98 x V / throughput = 60 s; the fixed part of the latency left out)
    if out["throughput_per_s"]:
        out["visit_size_at_60s_p98_derived"] = int(out["throughput_per_s"] * OBJECTIVE_S / 0.98)
    return out


def spawn_member(env: Mapping[str, str], work_dir: Path, index: int, *, own_session: bool = False,
                 run_command: bool = False) -> subprocess.Popen:
    """Member ``index`` with settings ``env``: its environment, log and summary are ``env<i>.json``,
    ``member<i>.log`` (appended to: a restarted member adds to it) and ``summary<i>.json`` in
    ``work_dir``. The member is :mod:`benchmarks.service_worker` (the service alone, its CPU
    measurable, a summary written at SIGTERM) or, with ``run_command``, ``python -m stream.cli run``:
    the production entry point, with its startup check and broker/Redis watch (``sc_kafka_up``,
    ``/readyz``), settings from its process environment, no summary. With ``own_session`` it leads
    its own process group, so one ``killpg`` reaches its decode workers too (as a container's kill does)."""
    env_path = work_dir / f"env{index}.json"
    env_path.write_text(json.dumps(dict(env)))
    if run_command:
        argv = [sys.executable, "-m", "stream.cli", "run"]
        proc_env: dict[str, str] | None = {**os.environ, **env}
    else:
        argv = [sys.executable, "-m", "benchmarks.service_worker", str(env_path), str(work_dir / f"summary{index}.json")]
        proc_env = None
    with open(work_dir / f"member{index}.log", "ab") as logfile:
        return subprocess.Popen(argv, cwd=REPO, env=proc_env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=own_session)


def stop_members(procs: Sequence[subprocess.Popen], wait_s: float = 120.0) -> None:
    """SIGTERM to every running member (each finishes its batch, commits and writes its summary), then wait; kill past ``wait_s``."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def send_visit(publisher: Any, burst: Sequence[NightMessage], window_s: float, slices: int = 20) -> None:
    """One visit's alerts spread evenly over ``window_s`` in ``slices`` slices."""
    step = -(-len(burst) // slices) or 1
    t_visit = time.monotonic()
    for s in range(slices):
        time.sleep(max(0.0, t_visit + s * window_s / slices - time.monotonic()))
        publisher.send(burst[s * step:(s + 1) * step])
    publisher.producer.poll(0)


def _sent_times(reader: Any, publisher: Any) -> list[tuple[int, float]]:
    """(input send ms, latency ms) for every output matched to its input."""
    pairs = []
    for ts, source in reader.outputs:
        try:
            _, partition, offset = source.rsplit("/", 2)
            sent = publisher.sent_ms[(int(partition), int(offset))]
        except (KeyError, ValueError):
            continue
        pairs.append((sent, float(ts - sent)))
    return pairs


def wait_all_ready(procs: Sequence[tuple[subprocess.Popen, int]], timeout_s: float) -> None:
    """Every member answers /readyz 200 at once (the group has settled), twice a second apart."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    settled = 0
    while time.monotonic() < deadline:
        ok = True
        for proc, port in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a member exited at start with code {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                    ok = ok and resp.status == 200
            except OSError:
                ok = False
        settled = settled + 1 if ok else 0
        if settled >= 3:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the {len(procs)} members were not all ready within {timeout_s:.0f} s")


def members_markdown(results: Mapping[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Members benchmark: {results['night']['alerts']:,} alerts per member count",
        "",
        f"Command: `{results['command']}`  ",
        f"Started {results['started_utc']}, took {results['elapsed_s']:.0f} s. Machine: {m['cpu_model']}, {m['cpu_cores']} cores, "
        f"device {results['device']}, load average at start {m['load_average_1_5_15']}, at end {results.get('load_average_end')}. "
        f"Git {m['git_commit']}. Alert models: {results.get('models')}.",
        "",
        "| members | partitions | visits x size | complete | throughput alerts/s | CPU ms per alert (members) | latency p50 / p95 / p98 / p99 s "
        "| share within 60 s | per member consumed | published once |",
        "|---:|---:|---|---|---:|---:|---|---:|---|---|",
    ]
    for run in results["runs"]:
        lat = run["latency_ms"]
        fmt = " / ".join("-" if lat[q] is None else f"{lat[q] / 1000:.1f}" for q in ("p50", "p95", "p98", "p99"))
        consumed = ", ".join(str(x.get("consumed", "-")) for x in run["per_member"])
        sizes = run.get("visit_sizes") or [run["visit_size"]]
        shape = (f"{run['visits']} x {run['visit_size']:,}" if len(set(sizes)) == 1
                 else f"{run['visits']}: {min(sizes):,} to {max(sizes):,} ({sum(sizes):,})")
        lines.append(f"| {run['members']} | {run['partitions']} | {shape} | {run.get('complete')} "
                     f"| {run['throughput_per_s'] or '-'} | {run['cpu_ms_per_alert'] or '-'} | {fmt} | {lat['share_within_60s']} "
                     f"| {consumed} | {run['published'] == run['inputs'] and run['balanced']} |")
    lines += ["", "Per visit (latency p50 / p98 s):", ""]
    for run in results["runs"]:
        visits = "; ".join(f"{v['p50'] / 1000:.1f} / {v['p98'] / 1000:.1f}" if v["p50"] is not None else "-"
                           for v in run["latency_ms_by_visit"])
        lines.append(f"- {run['members']} member(s): {visits}")
    lines += ["", *[f"- {n}" for n in results.get("notes", [])], ""]
    return "\n".join(lines)
