"""``python -m benchmarks.chaos``: a replayed night through several members, one fault at a time.

For each fault (:mod:`benchmarks.chaos_faults`), on one embedded stack (Tansu broker + Debian
redis-server) and fresh topics and a fresh Redis prefix per scenario: ``--members`` members
(:mod:`benchmarks.service_worker`, each leading its own process group, each its own metrics port)
join one group; once all answer ``/readyz`` the night is sent as visits (one every
``--visit-period-s``, each within ``--visit-window-s``) for ``pre + hold + post`` seconds. The
fault is injected ``pre`` seconds in, held ``hold`` seconds (a killed member is restarted after
``--restart-delay-s``), then released. A reader follows the classified and dead-letter topics
until every input is accounted for (plus a few seconds for late duplicates); every member's
``/readyz`` and ``/metrics`` gauges are polled twice a second; a member that exits unasked is
recorded and restarted after the restart delay, as Kubernetes would.

Per scenario (arithmetic in :mod:`benchmarks.chaos_accounting`): inputs sent, distinct inputs
published, dead-lettered, **lost** (neither: must be 0), **duplicates** (classified records
beyond the first, against the documented window: one batch per killed member), time to recover
(backlog back to its pre-fault maximum), latency p50/p98/p99 and the share within 60 s for inputs
sent before / during / after the fault, whether each member's ``/readyz`` and gauges told the
truth, and member exits. Results: ``benchmarks/results/<machine>/chaos/chaos.{json,md}``
(``--quick``: ``.../chaos-quick/``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from benchmarks.chaos_accounting import Poll, account, first_times, latency_by_phase, recovery, truth
from benchmarks.chaos_faults import FAULTS, VICTIM, Fault, Injector, Target, decode_workers_of
from benchmarks.machine import REPO, host_label, load_average, machine_stamp
from benchmarks.members import send_visit, spawn_member, stop_members, wait_all_ready
from benchmarks.night_data import NightMessage
from benchmarks.service_run import _Publisher, _Reader, _wait_ready, bench_topics, member_env, source_key

__all__ = ["Plan", "run_scenario", "run_chaos", "chaos_markdown", "parse_args", "main", "parse_gauges", "readyz_missing"]

log = structlog.get_logger(__name__)

RESULTS = REPO / "benchmarks" / "results"
#: The documented duplicate window (stream/README.md): a crash between the broker's acknowledgement
#: and the Redis mark republishes that one batch, at most ``batch.max_size`` records.
DUPLICATE_WINDOW_BATCHES_PER_KILL = 1


@dataclass(frozen=True)
class Plan:
    """One scenario's timing (seconds) and size."""

    alerts: int = 3000
    members: int = 2
    pre_s: float = 20.0
    hold_s: float = 20.0
    post_s: float = 30.0
    visit_period_s: float = 2.0
    visit_window_s: float = 1.0
    restart_delay_s: float = 10.0
    drain_timeout_s: float = 240.0
    linger_s: float = 5.0
    poll_s: float = 0.5

    @property
    def visits(self) -> int:
        return max(1, math.ceil((self.pre_s + self.hold_s + self.post_s) / self.visit_period_s))

    def hold_for(self, fault: Fault) -> float:
        if fault.kills_member:
            return self.restart_delay_s
        return self.hold_s if fault.held else 0.0


def parse_gauges(text: str) -> dict[str, float]:
    """``sc_redis_up``, ``sc_kafka_up``, ``sc_in_flight_batches`` and the summed ``sc_consumer_lag`` from /metrics text."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("sc_"):
            continue
        name, _, value = line.rpartition(" ")
        metric = name.split("{", 1)[0]
        try:
            v = float(value)
        except ValueError:
            continue
        if metric in ("sc_redis_up", "sc_kafka_up", "sc_in_flight_batches"):
            out[metric] = v
        elif metric == "sc_consumer_lag":
            out[metric] = out.get(metric, 0.0) + v
    return out


def readyz_missing(body: str) -> str | None:
    """What a 503 from /readyz said was missing: its false fields, joined (``assigned``, ``redis_up``, ``kafka_up``...)."""
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    missing = [k for k, v in fields.items() if v is False] if isinstance(fields, dict) else []
    return ",".join(missing) or None


class _Watcher(threading.Thread):
    """Polls one member's /readyz and /metrics every ``interval_s``; each look is a :class:`Poll`."""

    def __init__(self, port: int, interval_s: float = 0.5, timeout_s: float = 1.0) -> None:
        super().__init__(name=f"chaos-watch-{port}", daemon=True)
        self.port, self.interval_s, self.timeout_s = port, interval_s, timeout_s
        self.polls: list[Poll] = []
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def _get(self, path: str) -> tuple[int | None, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=self.timeout_s) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except OSError:
            return None, ""

    def run(self) -> None:
        while not self._stop_event.is_set():
            t = time.time()
            status, body = self._get("/readyz")
            state = "ready" if status == 200 else "not_ready" if status == 503 else "unreachable"
            code, text = self._get("/metrics")
            g = parse_gauges(text) if code == 200 else {}
            self.polls.append(Poll(t, state, g.get("sc_redis_up"), g.get("sc_kafka_up"), g.get("sc_consumer_lag"),
                                   why=readyz_missing(body) if state == "not_ready" else None))
            self._stop_event.wait(max(0.0, self.interval_s - (time.time() - t)))


def _stats(port: int) -> dict[str, Any]:
    """A member's /stats summed over its partitions: consumed, published, duplicates, dead-lettered, balanced."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
            parts = json.loads(resp.read())
    except (OSError, ValueError):
        return {}
    total: dict[str, Any] = {k: sum(int(p[k]) for p in parts.values()) for k in ("consumed", "published", "duplicates", "dead_lettered")}
    total["balanced"] = all(p["balanced"] for p in parts.values())
    return total


def _send_night(publisher: Any, messages: Sequence[NightMessage], plan: Plan, t0: float, visit_starts: list[float]) -> None:
    size = -(-len(messages) // plan.visits)
    for v in range(plan.visits):
        time.sleep(max(0.0, t0 + v * plan.visit_period_s - time.time()))
        visit_starts.append(time.time())
        send_visit(publisher, messages[v * size:(v + 1) * size], plan.visit_window_s)
    publisher.flush(600)


def run_scenario(fault: Fault, messages: Sequence[NightMessage], *, stack: Any, service_env: Mapping[str, str], plan: Plan,
                 work_dir: Path | None = None) -> dict[str, Any]:
    """One replayed night through ``plan.members`` members with ``fault`` injected; the figures in the module doc."""
    from benchmarks.tcp_proxy import TcpProxy
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, create_topics, free_ports

    name = f"chaos-{fault.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    topics = bench_topics(name)
    partitions = max(4, 2 * plan.members)
    create_topics(stack.bootstrap_servers, list(topics.values()), partitions=partitions)
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work_dir))
    base = {**member_env(stack, name, topics, EMBEDDED_ASSIGNMENT_STRATEGY), **service_env}
    proxy = TcpProxy("127.0.0.1", stack.redis_port).start() if fault.needs_proxy else None
    ports = free_ports(plan.members)
    envs = [{**base, "SC__OBSERVABILITY__METRICS_PORT": str(port)} for port in ports]
    if proxy is not None:
        envs[VICTIM]["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
    exits: list[dict[str, Any]] = []
    restarts_due: dict[int, float] = {}

    def respawn(i: int) -> None:
        target.members[i] = spawn_member(envs[i], tmp, i, own_session=True, run_command=True)

    target = Target(stack=stack, members=[], respawn=respawn, proxy=proxy)
    injector = Injector(fault, target)
    watchers: list[_Watcher] = []
    reader = None
    publisher = _Publisher(stack.bootstrap_servers, topics["in"])
    out: dict[str, Any] = {"fault": fault.name, "description": fault.description, "members": plan.members, "partitions": partitions,
                           "plan": asdict(plan), "load_average_start": load_average()}
    try:
        for i in range(plan.members):
            target.members.append(spawn_member(envs[i], tmp, i, own_session=True, run_command=True))
            if i == 0:  # the first fills the engine cache; the others load from it
                _wait_ready(ports[0], target.members[0], timeout_s=300)
        wait_all_ready(list(zip(target.members, ports, strict=True)), timeout_s=300)
        watchers = [_Watcher(port, plan.poll_s) for port in ports]
        for w in watchers:
            w.start()
        reader = _Reader(stack.bootstrap_servers, topics["out"], topics["dlq"], publisher.sent_ms, expect=len(messages),
                         linger_s=plan.linger_s)
        reader.start()
        t0 = time.time()
        visit_starts: list[float] = []
        sender = threading.Thread(target=_send_night, args=(publisher, messages, plan, t0, visit_starts), name="chaos-sender", daemon=True)
        sender.start()
        start = t0 + plan.pre_s
        if not fault.held:  # an instantaneous fault lands mid-visit, while alerts are being decoded
            start = t0 + round(plan.pre_s / plan.visit_period_s) * plan.visit_period_s + plan.visit_window_s / 2
        release = start + plan.hold_for(fault)
        injected = released = False
        deadline = t0 + plan.pre_s + plan.hold_s + plan.post_s + plan.drain_timeout_s
        while time.time() < deadline and not (released and not sender.is_alive() and reader.done.is_set() and not reader.is_alive()):
            now = time.time()
            if not injected and now >= start:
                injector.inject()
                start, injected = time.time(), True
                release = start + plan.hold_for(fault)
                log.info("fault injected", fault=fault.name, hold_s=plan.hold_for(fault))
            if injected and not released and now >= release:
                injector.release()
                release, released = time.time(), True
                log.info("fault released", fault=fault.name)
            for i, proc in enumerate(target.members):   # a member that exits unasked: recorded, restarted like Kubernetes
                if proc.poll() is not None and i not in target.killed and i not in restarts_due:
                    exits.append({"member": i, "t_s": round(now - t0, 2), "code": proc.returncode})
                    restarts_due[i] = now + plan.restart_delay_s
                    log.warning("member exited unasked", member=i, code=proc.returncode)
            for i, due in list(restarts_due.items()):
                if now >= due:
                    respawn(i)
                    del restarts_due[i]
            time.sleep(0.1)
        out["complete"] = reader.done.is_set()
        out["workers_of_victim_at_end"] = len(decode_workers_of(target.members[VICTIM].pid)) if target.members[VICTIM].poll() is None else None
        out["member_stats_at_end"] = [_stats(port) for port in ports]
    finally:
        injector.cleanup()
        if reader is not None:
            reader.stop()
        for w in watchers:
            w.stop()
        stop_members(target.members)
        out["member_exit_codes_at_stop"] = [proc.returncode for proc in target.members]
        if proxy is not None:
            proxy.stop()
    out["load_average_end"] = load_average()
    out["fault_details"] = injector.details
    if proxy is not None:
        out["fault_details"].update(proxy_connections=proxy.connections_total, proxy_connections_reset=proxy.connections_aborted)
    return {**out, **_figures(fault, plan, reader, publisher, watchers, start, release, t0, exits, tmp)}


def _figures(fault: Fault, plan: Plan, reader: Any, publisher: Any, watchers: Sequence[_Watcher], start: float, release: float,
             t0: float, exits: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    sent = dict(publisher.sent_ms)
    outputs = [(ts, source_key(src)) for ts, src in reader.outputs]
    dead = [(ts, (p, o)) for ts, p, o, _ in reader.dead_letters]
    acc = account(sent, outputs, dead)
    acc["dead_letter_reasons"] = sorted({reason for *_, reason in reader.dead_letters})
    kills = 1 if fault.kills_member else 0
    kills += len(exits)
    batch = int(json.loads((tmp / "env0.json").read_text()).get("SC__BATCH__MAX_SIZE", 256))
    acc["duplicate_window"] = kills * DUPLICATE_WINDOW_BATCHES_PER_KILL * batch
    acc["duplicates_within_window"] = acc["duplicates"] <= acc["duplicate_window"]
    first_out = first_times(outputs)
    accounted = first_times([*outputs, *dead])
    start_ms, release_ms = 1000 * start, 1000 * release
    members_truth = []
    for i, w in enumerate(watchers):
        verdict = truth(w.polls, start, max(release, start + plan.poll_s * 2), expect_down=fault.expect_down(i), gauge=fault.gauge)
        lags = [p.lag for p in w.polls if p.lag is not None]
        verdict["max_lag"] = max(lags) if lags else None
        members_truth.append(verdict)
    polls = [[i, round(p.t - t0, 2), p.state, p.why, p.redis_up, p.kafka_up, p.lag] for i, w in enumerate(watchers) for p in w.polls]
    return {
        "fault_at_s": round(start - t0, 2), "released_at_s": round(release - t0, 2),
        # every look at every member: [member, seconds since sending began, state, what a 503 named, sc_redis_up, sc_kafka_up, lag]
        "polls": polls,
        "accounting": acc,
        "latency_ms": latency_by_phase(sent, first_out, start_ms, release_ms),
        "recovery": recovery(list(sent.values()), list(accounted.values()), start_ms, release_ms),
        "truth": members_truth,
        "told_truth": all(v["told_truth"] for v in members_truth),
        "unasked_exits": exits,
        "crash_loop": any(sum(1 for e in exits if e["member"] == i) > 1 for i in range(len(watchers))),
        "work_dir": str(tmp),
    }


def run_chaos(faults: Sequence[str], messages: Sequence[NightMessage], plan: Plan, service_env: Mapping[str, str],
              work_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every fault in turn on one embedded stack (the faults need its processes: a remote cluster cannot be stopped from here)."""
    from stream.stack import EmbeddedStack

    runs = []
    with EmbeddedStack() as stack:
        for name in faults:
            run = run_scenario(FAULTS[name], messages, stack=stack, service_env=service_env, plan=plan, work_dir=work_dir)
            acc = run["accounting"]
            log.info("chaos scenario", fault=name, lost=acc["lost"], duplicates=acc["duplicates"],
                     recover_s=run["recovery"]["recover_s"], told_truth=run["told_truth"])
            runs.append(run)
    return runs


def _s(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}"


def chaos_markdown(results: Mapping[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Chaos suite: {results['plan']['alerts']:,} alerts per scenario, {results['plan']['members']} members",
        "",
        f"Command: `{results['command']}`  ",
        f"Started {results['started_utc']}, took {results['elapsed_s']:.0f} s. Machine: {m['cpu_model']}, {m['cpu_cores']} cores "
        f"(shared), load average at start {m['load_average_1_5_15']}, at end {results.get('load_average_end')}. Git {m['git_commit']}. "
        f"Alert models: {results.get('models')}; backend {results.get('service_backend')}.  ",
        f"Each scenario: visits every {results['plan']['visit_period_s']:g} s for {results['plan']['pre_s']:g} s before the fault, "
        f"{results['plan']['hold_s']:g} s held (a killed member restarted after {results['plan']['restart_delay_s']:g} s), "
        f"{results['plan']['post_s']:g} s after.",
        "",
        "| fault | inputs | published | dead-lettered | lost | duplicates published (window) | redelivered, caught by dedup "
        "| recover s (backlog before / peak) | latency p50 / p98 / p99 s, before | during | after | within 60 s (during / after) "
        "| /readyz + gauges told the truth | unasked exits |",
        "|---|---:|---:|---|---:|---|---:|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        a, lat, rec = run["accounting"], run["latency_ms"], run["recovery"]

        def trio(phase: str, lat: Mapping[str, Any] = lat) -> str:
            p = lat[phase]
            return "-" if not p["n"] else " / ".join(_s(p[q]) for q in ("p50", "p98", "p99"))

        share = " / ".join("-" if lat[ph]["share_within_60s"] is None else f"{lat[ph]['share_within_60s']:.3f}" for ph in ("during", "after"))
        dead = f"{a['dead_lettered_distinct']}" + (f" ({', '.join(a['dead_letter_reasons'])})" if a["dead_letter_reasons"] else "")
        told = ", ".join(f"m{i} {'yes' if t['told_truth'] else '**NO**'}" for i, t in enumerate(run["truth"]))
        redelivered = sum(m.get("duplicates", 0) for m in run.get("member_stats_at_end", []))
        lines.append(
            f"| {run['fault']} | {a['inputs']:,} | {a['published_distinct']:,} | {dead} | "
            f"{'**' + str(a['lost']) + '**' if a['lost'] else 0} | {a['duplicates']} ({a['duplicate_window']}) | {redelivered} | "
            f"{'-' if rec['recover_s'] is None else rec['recover_s']} ({rec['backlog_before_max']} / {rec['backlog_peak']}) | "
            f"{trio('before')} | {trio('during')} | {trio('after')} | {share} | {told} | "
            f"{len(run['unasked_exits'])}{' (crash loop)' if run['crash_loop'] else ''} |")
    lines += ["", "## What each member's /readyz and gauges said", "",
              "Seconds from the fault (said down, gauge at 0) or from its release (first ready answer after it, and ready for "
              "good: after the last not-ready answer; negative: before the release); what the 503 answers named as missing "
              "(or `unreachable`: no answer within 1 s), while the fault was held and after its release.", "",
              "| fault | member | expected | said down | gauge 0 | ready: first / for good | not ready, during | not ready, after | max lag |",
              "|---|---|---|---:|---:|---:|---|---|---:|"]

    def fmt_s(v: float | None) -> str:
        return "-" if v is None else f"{v:+.1f}"

    def fmt_why(d: Mapping[str, int]) -> str:
        return ", ".join(f"{k} x{n}" for k, n in sorted(d.items())) or "-"

    for run in results["runs"]:
        for i, t in enumerate(run["truth"]):
            lines.append(f"| {run['fault']} | m{i} | {'down' if t['expect_down'] else 'up'} | {fmt_s(t['said_down_after_s'])} | "
                         f"{fmt_s(t['gauge_zero_after_s']) if t['gauge'] else 'n/a'} | "
                         f"{fmt_s(t.get('first_ready_after_release_s'))} / {fmt_s(t['ready_again_after_release_s'])} | "
                         f"{fmt_why(t.get('why_during', {}))} | {fmt_why(t.get('why_after', {}))} | "
                         f"{'-' if t['max_lag'] is None else int(t['max_lag'])} |")
    lines += ["", "## Notes", "", *[f"- {n}" for n in results.get("notes", [])], ""]
    return "\n".join(lines)


NOTES = [
    "lost: inputs with neither a classified record nor a dead letter (must be 0). duplicates: classified records beyond the "
    "first per input; the window is the documented one (stream/README.md): one batch (batch.max_size) per member killed",
    "recover s: from the fault's release until the backlog (inputs sent - inputs accounted for, 0.5 s grid) is no higher "
    "than its maximum before the fault; a killed member's release is its restart",
    "latency: Kafka timestamp of an input's first classified record minus its send time; before / during / after = inputs "
    "sent before the fault, while it was held, after its release",
    "redelivered, caught by dedup: inputs consumed again (after a rebalance or a batch left uncommitted) and found in Redis "
    "as already published, from each member's /stats at the end (a killed member's first life is not counted)",
    "truth: each member's /readyz and /metrics polled every 0.5 s. A member the fault affects must say so (503 or no "
    "answer) while it is held, with sc_redis_up / sc_kafka_up at 0 where named, and every member must be ready at the end",
    "cpu_starve duty-cycles member 0 with SIGSTOP/SIGCONT (20 ms of every 100 ms), the way a CFS quota throttles a "
    "container; redis_net_cut resets and refuses member 0's connections through a userspace proxy (a cut link, not packet loss)",
    "the broker and Redis share this machine's cores with the members; other people's work ran beside it (load average above)",
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=2, help="members in the group (default 2)")
    p.add_argument("--alerts", type=int, default=None, help="alerts per scenario (default 3000; 300 with --quick)")
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, in order (default all: {','.join(FAULTS)})")
    p.add_argument("--hold-s", type=float, default=None, help="seconds a fault is held (default 20; 5 with --quick)")
    p.add_argument("--pre-s", type=float, default=None, help="seconds of night before the fault (default 20; 5 with --quick)")
    p.add_argument("--post-s", type=float, default=None, help="seconds of night after the release (default 30; 8 with --quick)")
    p.add_argument("--restart-delay-s", type=float, default=None, help="a killed member restarts after (default 10; 3 with --quick)")
    p.add_argument("--visit-period-s", type=float, default=None, help="seconds between visits (default 2; 1 with --quick)")
    p.add_argument("--models", nargs="+", default=[], help="alert models (default: every registered model)")
    p.add_argument("--service-backend", default="onnxruntime", help="the members' backend (default onnxruntime)")
    p.add_argument("--quick", action="store_true", help="short scenarios (a smoke run, not figures to quote)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/<machine>/chaos/)")
    args = p.parse_args(argv)
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in args.faults if f not in FAULTS]
    if unknown:
        p.error(f"unknown fault(s) {unknown}; choose from {','.join(FAULTS)}")
    if args.members < 1:
        p.error("--members must be >= 1")
    q = args.quick
    args.plan = Plan(
        alerts=args.alerts or (300 if q else 3000), members=args.members,
        pre_s=args.pre_s if args.pre_s is not None else (5.0 if q else 20.0),
        hold_s=args.hold_s if args.hold_s is not None else (5.0 if q else 20.0),
        post_s=args.post_s if args.post_s is not None else (8.0 if q else 30.0),
        visit_period_s=args.visit_period_s or (1.0 if q else 2.0),
        visit_window_s=0.5 if q else 1.0,
        restart_delay_s=args.restart_delay_s if args.restart_delay_s is not None else (3.0 if q else 10.0),
        drain_timeout_s=120.0 if q else 240.0, linger_s=3.0 if q else 5.0,
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.night import _engine_env
    from benchmarks.night_data import build_night

    args = parse_args(argv)
    started = time.time()
    night = build_night(args.plan.alerts)
    env = _engine_env(args.service_backend, "cpu", models=args.models)
    results: dict[str, Any] = {
        "command": "python -m benchmarks.chaos " + " ".join(sys.argv[1:] if argv is None else argv),
        "started_utc": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_stamp(), "device": "cpu", "service_backend": args.service_backend,
        "models": list(args.models) or "every registered model", "plan": asdict(args.plan), "night": night.describe(),
    }
    results["runs"] = run_chaos(args.faults, night.alerts, args.plan, env)
    results["notes"] = NOTES
    results["load_average_end"] = load_average()
    results["elapsed_s"] = round(time.time() - started, 1)
    out_dir = args.out or (RESULTS / host_label() / ("chaos-quick" if args.quick else "chaos"))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "chaos.json").write_text(json.dumps(results, indent=1, default=str))
    md = chaos_markdown(results)
    (out_dir / "chaos.md").write_text(md)
    print(md)
    print("results:", out_dir / "chaos.json", out_dir / "chaos.md")
    bad = [r["fault"] for r in results["runs"] if r["accounting"]["lost"] or not r["accounting"]["duplicates_within_window"]]
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
