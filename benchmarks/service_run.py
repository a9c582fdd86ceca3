"""The real service against the embedded broker and Redis: a drained backlog and paced bursts.

One run = fresh topics (4 partitions) and a fresh Redis key prefix, the service in its own
process (:mod:`benchmarks.service_worker`), the night's messages published from memory by an
idempotent ``acks=all`` producer with replay's keys and headers (object id key, ``sc-*``
headers; Kafka timestamp = send time), and a reader that follows the classified and
dead-letter topics until every input is accounted for; then SIGTERM lets the service commit and
stop cleanly.

End-to-end latency of one alert = Kafka timestamp of its classified record (set when the
service produced it) minus the Kafka timestamp of its input message (set when it was sent); the
output's ``sc-source`` header (``topic/partition/offset``) names the input. A sampler records
CPU time and RSS of the service process (and its decode worker), the broker and Redis every
half second.
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from benchmarks.night_data import NightMessage
from stream.kafka_clients import produce_retrying

__all__ = ["ServiceRunResult", "BurstPlan", "run_service", "bare_consume", "percentiles", "source_key", "REPO"]

log = structlog.get_logger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BurstPlan:
    """Paced input: ``bursts`` bursts of ``size`` alerts, each sent within ``window_s``, one every ``period_s``."""

    bursts: int
    size: int
    window_s: float
    period_s: float

    @property
    def total(self) -> int:
        return self.bursts * self.size


@dataclass
class ServiceRunResult:
    mode: str
    inputs: int
    outputs: int = 0
    dead_letters: int = 0
    ready_unix: float = 0.0
    publish_started_unix: float = 0.0
    publish_ended_unix: float = 0.0
    latencies_ms: list[tuple[int, int]] = field(default_factory=list)   # (output ts ms, latency ms)
    samples: list[dict[str, float]] = field(default_factory=list)
    worker: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray([latency for _, latency in self.latencies_ms], dtype=float)
        out_ts = np.asarray(sorted(t for t, _ in self.latencies_ms), dtype=float)
        start_ms = 1000 * (self.ready_unix if self.mode == "asap" else self.publish_started_unix)
        span_s = (out_ts[-1] - start_ms) / 1000 if out_ts.size else 0.0
        steady = None
        if out_ts.size >= 20:
            lo, hi = out_ts[int(0.1 * out_ts.size)], out_ts[int(0.9 * out_ts.size) - 1]
            steady = (int(0.9 * out_ts.size) - int(0.1 * out_ts.size)) / ((hi - lo) / 1000) if hi > lo else None
        # CPU and memory from the moment the service was ready: model loading and start-up are not the stream's cost
        running = [x for x in self.samples if x["t"] >= self.ready_unix] or self.samples
        cpu = _cpu_by_role(running)
        rss = [s["service_rss"] for s in running if s.get("service_rss")]
        wall = (running[-1]["t"] - running[0]["t"]) if len(running) > 1 else 0.0
        return {
            "mode": self.mode,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "dead_letters": self.dead_letters,
            "complete": self.complete,
            "throughput_per_s": round(self.outputs / span_s, 1) if span_s > 0 else None,
            "throughput_window_s": round(span_s, 2),
            "steady_throughput_per_s": round(steady, 1) if steady else None,
            "latency_ms": percentiles(lat),
            "plan": self.plan,
            "cpu_seconds": cpu,
            "service_cpu_ms_per_alert": round(1000 * cpu["service"] / self.outputs, 3) if cpu.get("service") and self.outputs else None,
            "cpu_cores_busy": {k: round(v / wall, 2) for k, v in cpu.items()} if wall > 0 else {},
            "service_rss_mib": {
                "start": _mib(self.worker.get("rss_start_bytes")),
                "end": _mib(self.worker.get("rss_end_bytes")),
                # quarters of the run: flat memory means these stay level once the first batches are in
                "at_25pct": _mib(rss[len(rss) // 4]) if rss else None,
                "at_50pct": _mib(rss[len(rss) // 2]) if rss else None,
                "at_75pct": _mib(rss[3 * len(rss) // 4]) if rss else None,
                "sampled_peak": _mib(max(rss)) if rss else None,
                # VmHWM: the process's own peak (ru_maxrss is not used: Linux carries the benchmark's
                # peak into a child across fork+exec, so it reports the parent's gigabytes)
                "peak_vmhwm": _mib(self.worker.get("peak_rss_bytes")),
            },
            "stage_seconds": self.worker.get("stage_seconds", {}),
            "service_totals": self.worker.get("totals", {}),
            "service_usage": {"self": self.worker.get("usage_self"), "children": self.worker.get("usage_children"),
                              "self_at_ready": self.worker.get("usage_after_build")},
            "settings": self.settings,
        }


def _mib(n: float | None) -> float | None:
    return round(n / 2**20, 1) if n else None


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1),
            "p99": round(float(np.percentile(values, 99)), 1), "max": round(float(values.max()), 1), "mean": round(float(values.mean()), 1)}


def _cpu_by_role(samples: Sequence[Mapping[str, float]]) -> dict[str, float]:
    if len(samples) < 2:
        return {}
    first, last = samples[0], samples[-1]
    return {role: round(last.get(f"{role}_cpu", 0.0) - first.get(f"{role}_cpu", 0.0), 2) for role in ("service", "broker", "redis")}


class _Sampler(threading.Thread):
    """CPU seconds and RSS of the service tree, the broker and Redis, every ``interval_s``."""

    def __init__(self, service_pid: int, interval_s: float = 0.5) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.service_pid = service_pid
        self.interval_s = interval_s
        self.samples: list[dict[str, float]] = []
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        me = psutil.Process()
        try:
            service = psutil.Process(self.service_pid)
        except psutil.Error:
            return
        # CPU seconds per pid ever seen: a decode worker that exits at shutdown keeps its share
        cpu_by_pid: dict[int, float] = {}
        while not self._stop_event.is_set():
            row: dict[str, float] = {"t": time.time()}
            try:
                row["service_rss"] = service.memory_info().rss
                procs = [service] + service.children(recursive=True)
            except psutil.Error:
                break  # the service itself is gone
            tree_rss = 0
            for p in procs:
                try:
                    cpu_by_pid[p.pid] = sum(p.cpu_times()[:2])
                    tree_rss += p.memory_info().rss
                except psutil.Error:
                    continue  # a child that just exited
            row["service_cpu"] = sum(cpu_by_pid.values())
            row["service_tree_rss"] = tree_rss
            for child in me.children():
                try:
                    name = child.name()
                    role = "broker" if "tansu" in name else "redis" if "redis" in name else None
                    if role:
                        row[f"{role}_cpu"] = sum(child.cpu_times()[:2])
                        row[f"{role}_rss"] = child.memory_info().rss
                except psutil.Error:
                    continue
            self.samples.append(row)
            self._stop_event.wait(self.interval_s)


class _Reader(threading.Thread):
    """Follows the output and dead-letter topics; matches outputs to input send times by ``sc-source``."""

    def __init__(self, bootstrap: str, output_topic: str, dlq_topic: str, input_ts: dict[tuple[int, int], int], expect: int,
                 linger_s: float = 0.0) -> None:
        super().__init__(name="bench-reader", daemon=True)
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        parts = []
        for topic in (output_topic, dlq_topic):
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [TopicPartition(topic, p, 0) for p in sorted(meta.partitions)]
        self.consumer.assign(parts)
        self.output_topic = output_topic
        self.input_ts = input_ts
        self.expect = expect
        self.outputs: list[tuple[int, str]] = []   # (output ts, "topic/partition/offset" of input)
        self.dead = 0
        #: (dead letter ts, input partition, input offset, reason) of each dead letter
        self.dead_letters: list[tuple[int, int, int, str]] = []
        #: inputs accounted for ((partition, offset) with a classified record or a dead letter):
        #: done counts these, so a duplicate never ends the reading early
        self.accounted: set[tuple[int, int]] = set()
        #: seconds to keep reading once every input is accounted for (late duplicates)
        self.linger_s = linger_s
        self.done = threading.Event()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        try:
            linger_until = None
            while not self._stop_event.is_set() and (linger_until is None or time.monotonic() < linger_until):
                for msg in self.consumer.consume(num_messages=2000, timeout=0.2):
                    if not msg.error():
                        self._take(msg)
                if linger_until is None and len(self.accounted) >= self.expect:
                    self.done.set()
                    linger_until = time.monotonic() + self.linger_s
        finally:
            self.consumer.close()

    def _take(self, msg: Any) -> None:
        headers = dict(msg.headers() or [])
        if msg.topic() != self.output_topic:
            self.dead += 1
            try:
                key = (int(headers.get("sc-source-partition", b"")), int(headers.get("sc-source-offset", b"")))
            except ValueError:
                return
            self.dead_letters.append((msg.timestamp()[1], *key, headers.get("sc-reason", b"").decode()))
            self.accounted.add(key)
            return
        source = headers.get("sc-source", b"").decode()
        self.outputs.append((msg.timestamp()[1], source))
        key = source_key(source)
        if key is not None:
            self.accounted.add(key)

    def latencies(self) -> list[tuple[int, int]]:
        out = []
        for ts, source in self.outputs:
            key = source_key(source)
            if key is None or key not in self.input_ts:
                continue
            out.append((ts, ts - self.input_ts[key]))
        return out


def source_key(source: str) -> tuple[int, int] | None:
    """``(partition, offset)`` of the input an output's ``sc-source`` header (``topic/partition/offset``) names."""
    try:
        _, partition, offset = source.rsplit("/", 2)
        return int(partition), int(offset)
    except ValueError:
        return None


class _Publisher:
    """Sends night messages with replay's producer settings; remembers each input's (partition, offset) -> send ms."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True, "acks": "all",
                                  "queue.buffering.max.kbytes": 1048576, "message.max.bytes": 10_000_000})
        self.sent_ms: dict[tuple[int, int], int] = {}
        self.failures: list[str] = []

    def send(self, messages: Sequence[NightMessage]) -> None:
        for m in messages:
            ts = int(time.time() * 1000)

            def on_delivery(err: Any, msg: Any, ts: int = ts) -> None:
                if err is not None:
                    self.failures.append(str(err))
                else:
                    self.sent_ms[(msg.partition(), msg.offset())] = ts

            produce_retrying(self.producer, self.topic, m.value, key=m.key, headers=m.headers, timestamp=ts,
                             on_delivery=on_delivery, wait_s=0.05)
            self.producer.poll(0)

    def flush(self, timeout_s: float = 120.0) -> None:
        left = self.producer.flush(timeout_s)
        if left or self.failures:
            raise RuntimeError(f"benchmark publish failed: {len(self.failures)} delivery failures, {left} unflushed (first: {self.failures[:1]})")


def _wait_ready(port: int, proc: subprocess.Popen, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited at start with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return time.time()
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the service was not ready (partitions assigned, Redis up) within {timeout_s:.0f} s")


def bench_topics(name: str) -> dict[str, str]:
    """The topics of one benchmark run named ``name``: input, output, dead letters, exposure output."""
    return {"in": f"{name}-alerts", "out": f"{name}-classified", "dlq": f"{name}-dlq", "exp_out": f"{name}-classified-exposures"}


def member_env(stack: Any, name: str, topics: Mapping[str, str], assignment_strategy: str) -> dict[str, str]:
    """The environment of one service member of run ``name`` on ``stack`` (metrics port and the
    caller's ``service_env`` added by the caller)."""
    from stream.stack import EMBEDDED_SESSION_TIMEOUT_MS

    return {
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
        "REDIS_URL": stack.redis_url,
        "SC__KAFKA__ALERT_TOPICS": topics["in"],
        "SC__KAFKA__OUTPUT_TOPIC": topics["out"],
        "SC__KAFKA__EXPOSURE_OUTPUT_TOPIC": topics["exp_out"],
        "SC__KAFKA__DEAD_LETTER_TOPIC": topics["dlq"],
        "SC__KAFKA__GROUP_ID": f"{name}-group",
        "SC__KAFKA__ASSIGNMENT_STRATEGY": assignment_strategy,
        "SC__KAFKA__SESSION_TIMEOUT_MS": str(EMBEDDED_SESSION_TIMEOUT_MS),
        "SC__REDIS__KEY_PREFIX": f"{name}:",
        "SC__OBSERVABILITY__LOG_FORMAT": "json",
        "SC__OBSERVABILITY__LOG_LEVEL": "warning",
        # members read /readyz on their metrics port: no separate health listener (it would take 9109 in each)
        "SC__OBSERVABILITY__HEALTH_PORT": "0",
    }


def run_service(mode: str, messages: Sequence[NightMessage], *, stack: Any, service_env: Mapping[str, str],
                plan: BurstPlan | None = None, partitions: int = 4, timeout_s: float = 900.0, work_dir: Path | None = None) -> ServiceRunResult:
    """One service run: ``mode`` ``"asap"`` (topic pre-loaded, then drained) or ``"paced"`` (``plan``'s bursts while it runs)."""
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, create_topics, free_port

    if mode not in ("asap", "paced") or (mode == "paced" and plan is None):
        raise ValueError("mode is asap, or paced with a BurstPlan")
    name = f"bench-{mode}-{uuid.uuid4().hex[:6]}"
    topics = bench_topics(name)
    create_topics(stack.bootstrap_servers, list(topics.values()), partitions=partitions)
    if mode == "paced":
        messages = messages[:plan.total]
    port = free_port()
    env = {**member_env(stack, name, topics, EMBEDDED_ASSIGNMENT_STRATEGY), "SC__OBSERVABILITY__METRICS_PORT": str(port),
           **service_env}
    result = ServiceRunResult(mode=mode, inputs=len(messages), settings={k: v for k, v in env.items() if k.startswith("SC__")},
                              plan=vars(plan) if plan else {})
    publisher = _Publisher(stack.bootstrap_servers, topics["in"])
    if mode == "asap":
        result.publish_started_unix = time.time()
        publisher.send(messages)
        publisher.flush()
        result.publish_ended_unix = time.time()
        log.info("topic pre-loaded", topic=topics["in"], messages=len(messages),
                 seconds=round(result.publish_ended_unix - result.publish_started_unix, 1))

    tmp = Path(tempfile.mkdtemp(prefix="bench-service-", dir=work_dir))
    env_file, out_file = tmp / "env.json", tmp / "summary.json"
    env_file.write_text(json.dumps(env))
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.service_worker", str(env_file), str(out_file)], cwd=REPO,
                            stdout=open(tmp / "service.log", "wb"), stderr=subprocess.STDOUT)
    sampler = _Sampler(proc.pid)
    sampler.start()
    reader = None
    try:
        result.ready_unix = _wait_ready(port, proc, timeout_s=300)
        reader = _Reader(stack.bootstrap_servers, topics["out"], topics["dlq"], publisher.sent_ms, expect=len(messages))
        reader.start()
        if mode == "paced":
            result.publish_started_unix = time.time()
            _send_bursts(publisher, messages, plan)
            publisher.flush()
            result.publish_ended_unix = time.time()
        reader.done.wait(timeout_s)
        result.complete = reader.done.is_set()
        if not result.complete:
            log.error("service run timed out before every input was accounted for",
                      outputs=len(reader.outputs), dead=reader.dead, expected=len(messages))
    finally:
        if reader is not None:
            reader.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        sampler.stop()
    if out_file.exists():
        result.worker = json.loads(out_file.read_text())
    else:
        log.error("the service wrote no summary", log_tail=(tmp / "service.log").read_text(errors="replace")[-2000:])
    if reader is not None:
        result.outputs, result.dead_letters = len(reader.outputs), reader.dead
        result.latencies_ms = reader.latencies()
    result.samples = sampler.samples
    return result


def bare_consume(messages: Sequence[NightMessage], *, stack: Any, partitions: int = 4, batch: int = 256,
                 timeout_s: float = 300.0) -> dict[str, Any]:
    """The night's messages through Kafka and nothing else: published to a fresh topic, then read
    back by one consumer with the service's consumer settings, ``batch`` at a time.

    What moving the alerts costs on this machine (the broker shares its cores), and what the
    machine's limit leaves out: ``per_s`` (first message to last), the reading process's CPU
    ms per message, and the broker's CPU seconds over the read.
    """
    from confluent_kafka import Consumer

    from stream.kafka_clients import CONSUMER_DEFAULTS
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, EMBEDDED_SESSION_TIMEOUT_MS, create_topics

    topic = f"bench-consume-{uuid.uuid4().hex[:6]}"
    create_topics(stack.bootstrap_servers, [topic], partitions=partitions)
    publisher = _Publisher(stack.bootstrap_servers, topic)
    publisher.send(messages)
    publisher.flush()
    consumer = Consumer({**CONSUMER_DEFAULTS, "bootstrap.servers": stack.bootstrap_servers, "group.id": f"{topic}-group",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "partition.assignment.strategy": EMBEDDED_ASSIGNMENT_STRATEGY,
                         "session.timeout.ms": EMBEDDED_SESSION_TIMEOUT_MS})
    broker = _child_pid("tansu")
    try:
        consumer.subscribe([topic])
        read, first = 0, 0
        t0 = cpu0 = broker0 = None
        deadline = time.monotonic() + timeout_s
        while read < len(messages) and time.monotonic() < deadline:
            got = [m for m in consumer.consume(batch, 1.0) if m.error() is None]
            if got and t0 is None:  # from the first batch on: the group join is not transport
                t0, cpu0, broker0, first = time.perf_counter(), time.process_time(), _cpu_seconds(broker), len(got)
            read += len(got)
        wall = time.perf_counter() - t0 if t0 is not None else 0.0
        cpu = time.process_time() - cpu0 if cpu0 is not None else 0.0
        counted = read - first
        broker_s = _cpu_seconds(broker) - broker0 if broker0 is not None and broker is not None else None
    finally:
        consumer.close()
    return {"messages": read, "complete": read == len(messages), "batch": batch,
            "per_s": round(counted / wall, 1) if wall > 0 and counted else None,
            "consumer_cpu_ms_per_message": round(1000 * cpu / counted, 4) if counted else None,
            "broker_cpu_s": None if broker_s is None else round(broker_s, 2)}


def _child_pid(name: str) -> int | None:
    """The pid of this process's child whose name contains ``name`` (the embedded broker), if any."""
    import psutil

    for child in psutil.Process().children():
        try:
            if name in child.name():
                return child.pid
        except psutil.Error:
            continue
    return None


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:  # noqa: BLE001 - a figure for the report only: a vanished broker just leaves it out
        return 0.0


def _send_bursts(publisher: _Publisher, messages: Sequence[NightMessage], plan: BurstPlan) -> None:
    """Each burst spread evenly over ``window_s`` (in 20 slices), bursts ``period_s`` apart."""
    start = time.monotonic()
    slices = 20
    for b in range(plan.bursts):
        burst_start = start + b * plan.period_s
        time.sleep(max(0.0, burst_start - time.monotonic()))
        burst = messages[b * plan.size:(b + 1) * plan.size]
        step = math.ceil(len(burst) / slices)
        for s in range(slices):
            time.sleep(max(0.0, burst_start + s * plan.window_s / slices - time.monotonic()))
            publisher.send(burst[s * step:(s + 1) * step])
        publisher.producer.poll(0)
        log.info("burst sent", burst=b + 1, of=plan.bursts, size=len(burst))
