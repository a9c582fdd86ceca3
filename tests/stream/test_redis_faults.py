"""Every Redis error pauses the line (issue #23, case 2).

Redis refusing writes is our fault, never the input's: out of memory under ``maxmemory`` with
``noeviction`` (OOM), a failed background save with ``stop-writes-on-bgsave-error`` (MISCONF),
a server turned into a replica by a failover (READONLY). Each used to escape ``mark()`` after the
batch was published, exit the service and republish the batch on every restart. Here each fault
is made for real on a private ``redis-server`` (the shared one is left alone), and the real
service on the real broker pauses (nothing committed, ``sc_redis_up`` 0, still running), resumes
once the fault is repaired, and publishes every alert exactly once: the same alerts sent again
are counted as duplicates, so the marks were written.
"""
from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from stream.config import load_settings
from stream.dedup import DedupUnavailable, RedisDedup
from stream.stack import free_port, redis_binary
from tests.kafka_helpers import produce_values
from tests.stream.hostile_messages import real_ztf_packets
from tests.stream.test_service import classified, engine_cache, make_topics, runners, settings_env, start_service  # noqa: F401 - fixtures
from tests.stream.test_service_hostile import _committed

pytestmark = pytest.mark.integration


class PrivateRedis:
    """A redis-server of this test's own (RDB snapshots on, so a failed save can stop writes)."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir, self.port = workdir, free_port()
        self.proc = subprocess.Popen([str(redis_binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir),
                                      "--save", "3600 1", "--appendonly", "no", "--protected-mode", "yes"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def wait_bgsave(self, status: str, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.client.info("persistence")
            if not info["rdb_bgsave_in_progress"] and info["rdb_last_bgsave_status"] == status:
                return
            assert time.monotonic() < deadline, info
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.kill()  # SIGTERM would try a last snapshot, which a blocked dir refuses (and the server stays up)
        self.proc.wait(10)


def _oom(server: PrivateRedis, extra: list) -> tuple[Callable[[], None], Callable[[], None], type]:
    def inject() -> None:
        server.client.config_set("maxmemory-policy", "noeviction")
        server.client.config_set("maxmemory", 1)

    def repair() -> None:
        server.client.config_set("maxmemory", 0)
    return inject, repair, redis.exceptions.OutOfMemoryError


def _misconf(server: PrivateRedis, extra: list) -> tuple[Callable[[], None], Callable[[], None], type]:
    """The snapshot cannot be renamed into place (a directory stands at dump.rdb): the save fails."""
    blocker = server.dir / "dump.rdb"

    def inject() -> None:
        server.client.config_set("stop-writes-on-bgsave-error", "yes")
        blocker.mkdir()
        server.client.bgsave()
        server.wait_bgsave("err")

    def repair() -> None:
        blocker.rmdir()
        server.client.bgsave()
        server.wait_bgsave("ok")
    return inject, repair, redis.exceptions.ResponseError


def _readonly(server: PrivateRedis, extra: list) -> tuple[Callable[[], None], Callable[[], None], type]:
    """A failover made our Redis a replica of another (a second real redis-server)."""
    def inject() -> None:
        primary = PrivateRedis(server.dir / "primary")
        extra.append(primary)
        server.client.replicaof("127.0.0.1", primary.port)

    def repair() -> None:
        server.client.replicaof("NO", "ONE")
    return inject, repair, redis.exceptions.ReadOnlyError


FAULTS = {"oom": _oom, "misconf": _misconf, "readonly": _readonly}


@pytest.fixture
def private_redis(tmp_path):
    servers: list[PrivateRedis] = []
    server = PrivateRedis(tmp_path / "redis")
    servers.append(server)
    yield server, servers
    for s in servers:
        s.close()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_mark_refused_by_redis_raises_our_pause_error_not_the_clients(private_redis, fault):
    server, extra = private_redis
    inject, repair, error = FAULTS[fault](server, extra)
    dedup = RedisDedup(server.url, key_prefix="t:", ttl_s=60)
    inject()
    with pytest.raises(error):  # the fault is real: Redis refuses the write with that error
        server.client.set("probe", "1")
    try:  # reads work under OOM and READONLY; under MISCONF the client's health-check PING is refused too
        assert dedup.published(["ztf:1"]) == set()
    except DedupUnavailable as exc:
        assert fault == "misconf" and isinstance(exc.__cause__, error)
    with pytest.raises(DedupUnavailable) as caught:
        dedup.mark({"ztf:1": "classified/0/0"})
    assert isinstance(caught.value.__cause__, error) and not caught.value.unreachable   # it answered, refusing
    repair()
    dedup.mark({"ztf:1": "classified/0/0"})
    assert dedup.published(["ztf:1"]) == {"ztf:1"}
    dedup.close()


def _pausing_service(url: str, retry_initial_s: float):
    """A Service around a real RedisDedup (Kafka unused here), Redis's backoff starting at ``retry_initial_s``."""
    from stream.metrics import Metrics
    from stream.service import Service

    settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": url,
                                  "SC__REDIS__RETRY_INITIAL_S": str(retry_initial_s), "SC__REDIS__RETRY_MAX_S": "30"})
    dedup = RedisDedup(url, key_prefix="t:", ttl_s=60, timeout_s=1.0)
    return Service(settings=settings, consumer=None, producer=None, dedup=dedup, runners={}, metrics=Metrics())  # type: ignore[arg-type]


def _timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def test_a_frozen_redis_is_retried_as_soon_as_it_answers_not_after_the_backoff(private_redis):
    """SIGSTOP, then SIGCONT after 2 s: the dedup check goes through within a probe of Redis
    answering, long before its 20 s backoff runs out (before the probe it waited all of it)."""
    import signal
    import threading

    server, _ = private_redis
    service = _pausing_service(server.url, retry_initial_s=20)
    server.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(DedupUnavailable) as caught:
            service.dedup.published(["ztf:1"])
        assert caught.value.unreachable
        threading.Timer(2.0, server.proc.send_signal, (signal.SIGCONT,)).start()
        took = _timed(lambda: service._redis.published(["ztf:1"]))
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert took < 8.0, f"resumed {took:.1f} s after the freeze began (backoff 20 s)"
    assert service.metrics.redis_up
    service.dedup.close()


def test_a_redis_refusing_writes_is_retried_after_the_backoff_not_at_every_probe(private_redis):
    """Under OOM Redis still answers PING: the probe must not turn the backoff into a retry a second."""
    server, extra = private_redis
    inject, repair, _ = _oom(server, extra)
    service = _pausing_service(server.url, retry_initial_s=3)
    inject()
    import threading

    threading.Timer(0.5, repair).start()
    took = _timed(lambda: service._redis.mark({"ztf:1": "classified/0/0"}))
    assert took >= 3.0, f"retried after {took:.1f} s, inside the 3 s backoff"
    assert service.dedup.published(["ztf:1"]) == {"ztf:1"}
    service.dedup.close()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_redis_refusing_writes_pauses_the_service_then_resumes_without_duplicates(services, unique_name, engine_cache, runners,
                                                                                  private_redis, fault, capfd):
    from schemas.decode import decode_message

    server, extra = private_redis
    inject, repair, _ = FAULTS[fault](server, extra)
    name = unique_name
    make_topics(services, name, partitions=1)
    values = [p.read_bytes() for p in real_ztf_packets(6)]
    keys = {item.key for v in values for item in decode_message(v)}
    settings = load_settings(env=settings_env(services, name, engine_cache, REDIS_URL=server.url, SC__BATCH__MAX_SIZE="8"))
    inject()
    service, thread = start_service(settings, runners)
    try:
        produce_values(services.bootstrap_servers, f"{name}-alerts", [(f"a{i}".encode(), v) for i, v in enumerate(values)])
        logged, deadline = "", time.monotonic() + 60
        while "redis_unreachable_paused" not in logged and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)
            logged += "".join(capfd.readouterr())
        assert thread.is_alive(), "a Redis error must not stop the service: " + logged[-3000:]
        assert "redis_unreachable_paused" in logged and not service.metrics.redis_up, "the service paused on the refusal"
        time.sleep(2.0)  # several retries (0.2 s doubling to 1 s)
        assert thread.is_alive()
        assert _committed(services, name, partitions=1) == [], "nothing committed while the marks are refused"
        assert service.metrics.totals().published == 0, "the batch is not counted done before its marks"

        repair()
        deadline = time.monotonic() + 60
        while service.metrics.totals().consumed < len(values) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.metrics.redis_up and service.metrics.totals().published == len(keys)
        assert _committed(services, name, partitions=1) == [len(values)]

        # the same alerts again: Redis holds the marks, so they are duplicates, not new records
        produce_values(services.bootstrap_servers, f"{name}-alerts", [(f"b{i}".encode(), v) for i, v in enumerate(values)])
        deadline = time.monotonic() + 60
        while service.metrics.totals().consumed < 2 * len(values) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        service.request_stop()
        thread.join(60)
    assert not thread.is_alive()
    totals = service.metrics.totals()
    assert totals.balanced and totals.consumed == 2 * len(values) and totals.duplicates == len(values)
    got = Counter(f"{r['survey']}:{r['alert_id']}" for r in classified(services, name, expect=len(keys)))
    assert set(got) == keys and max(got.values()) == 1, "each alert published once"
    assert totals.dead_lettered == 0
