"""The decode watchdog: a message that hangs, exhausts memory or crashes its worker costs one dead
letter; the rest of its batch decodes; the worker is replaced; every wait is bounded."""
from __future__ import annotations

import threading
import time

import pytest

from schemas.decode.limits import DecodeSettings
from stream.decode_pool import (
    DECODE_MEMORY_LIMIT,
    DECODE_TIMEOUT,
    DECODE_WORKER_CRASHED,
    DecodeAbandoned,
    DecodeLimits,
    DecodePool,
    wait_for_decode,
)
from tests.conftest import SAMPLES
from tests.stream.hostile_messages import (
    endless_container,
    fits_tile_bomb,
    killed_once_decode,
    naive_decode,
    real_ztf_packets,
    segfault_decode,
)

SETTINGS = DecodeSettings()


@pytest.fixture
def pool_factory():
    pools: list[DecodePool] = []

    def make(**kwargs) -> DecodePool:
        decode_fn = kwargs.pop("decode_fn", None)
        pool = DecodePool(1, DecodeLimits(**kwargs), decode_fn=decode_fn)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def test_real_packets_decode_through_the_pool_as_in_process(pool_factory):
    from stream.envelope import decode_values

    values = [p.read_bytes() for p in real_ztf_packets(4)] + [b"\x07junk"]
    pool = pool_factory(timeout_s=30, worker_memory_mb=1536)
    outcomes, seconds = pool.submit(values, SETTINGS).result(timeout=120)
    expected, _ = decode_values(values, SETTINGS)
    assert [o.reason for o in outcomes] == [o.reason for o in expected]
    assert [[a.alert_id for a in o.items] for o in outcomes] == [[a.alert_id for a in o.items] for o in expected]
    assert outcomes[0].ok and seconds > 0 and pool.replaced == 0


def test_endless_container_is_timed_out_alone_and_the_rest_of_the_batch_decodes(pool_factory):
    # fastavro trusts the block count: 2**62 records of zero bytes each, a loop that never ends
    endless = endless_container()
    assert len(endless) == 84
    good = real_ztf_packets(1)[0].read_bytes()
    pool = pool_factory(timeout_s=2.0, worker_memory_mb=0, decode_fn=naive_decode)
    t0 = time.monotonic()
    outcomes, _ = pool.submit([good, endless, good, b"\x07", endless], SETTINGS).result(timeout=60)
    elapsed = time.monotonic() - t0
    assert [o.reason for o in outcomes] == ["counted", DECODE_TIMEOUT, "counted", "unknown_format", DECODE_TIMEOUT]
    assert outcomes[0].detail == outcomes[2].detail == "1"
    assert "decode.timeout_s" in outcomes[1].detail
    assert pool.replaced == 2
    assert elapsed < 2 * 2.0 + 20  # one timeout per hostile message, plus two worker restarts
    # the replacement worker serves the next batch
    again, _ = pool.submit([good], SETTINGS).result(timeout=60)
    assert again[0].detail == "1"


def test_memory_bomb_hits_the_address_space_cap_alone(pool_factory):
    bomb = fits_tile_bomb()  # ~250 KB that astropy inflates to 256 MB, plus its work buffers
    assert len(bomb) < 400_000
    good = real_ztf_packets(1)[0].read_bytes()
    pool = pool_factory(timeout_s=60, worker_memory_mb=512, decode_fn=naive_decode)
    outcomes, _ = pool.submit([good, bomb, good], SETTINGS).result(timeout=120)
    assert [o.reason for o in outcomes] == ["counted", DECODE_MEMORY_LIMIT, "counted"]
    assert "decode.worker_memory_mb = 512" in outcomes[1].detail
    assert pool.replaced == 1
    # without the cap the same bytes decode (the cap, not the bytes, made the difference)
    uncapped = pool_factory(timeout_s=60, worker_memory_mb=0, decode_fn=naive_decode)
    free, _ = uncapped.submit([bomb], SETTINGS).result(timeout=120)
    assert free[0].reason == "counted" and int(free[0].detail) == 16000 * 16000


def test_worker_crash_is_isolated_and_the_worker_replaced(pool_factory):
    pool = pool_factory(timeout_s=30, worker_memory_mb=0, decode_fn=segfault_decode)
    outcomes, _ = pool.submit([b"a", b"crash", b"bc"], SETTINGS).result(timeout=60)
    assert [o.reason for o in outcomes] == ["counted", DECODE_WORKER_CRASHED, "counted"]
    assert "exit code -11" in outcomes[1].detail and "twice" in outcomes[1].detail
    assert [o.detail for o in outcomes[::2]] == ["1", "2"]
    assert pool.replaced == 2  # the message had a second, fresh worker before it was blamed


def test_a_worker_killed_from_outside_under_a_good_message_does_not_dead_letter_it(pool_factory, tmp_path):
    """SIGKILL from outside (the node's OOM killer, an operator, the chaos suite) while a good alert
    decodes: the alert is decoded again by a fresh worker, not dead-lettered as decode_memory_limit."""
    pool = pool_factory(timeout_s=30, worker_memory_mb=0, decode_fn=killed_once_decode)
    value = b"kill-once:" + str(tmp_path / "killed").encode()
    outcomes, _ = pool.submit([b"a", value, b"bc"], SETTINGS).result(timeout=60)
    assert (tmp_path / "killed").exists()  # the worker really was killed once
    assert [o.reason for o in outcomes] == ["counted"] * 3
    assert [o.detail for o in outcomes] == ["1", str(len(value)), "2"]
    assert pool.replaced == 1


def test_unreachable_registry_fails_the_batch_without_its_password(pool_factory):
    from schemas.decode import SchemaRegistryError

    wire = sorted((SAMPLES / "rubin" / "alerce-kafka").glob("*.avro"))[0].read_bytes()
    pool = pool_factory(timeout_s=30, worker_memory_mb=1536)
    fut = pool.submit([wire], SETTINGS, "http://reader:s3cret-pw@127.0.0.1:9")
    with pytest.raises(SchemaRegistryError) as info:
        fut.result(timeout=60)
    assert "s3cret" not in str(info.value) and "127.0.0.1:9" in str(info.value)
    # the worker is still usable: our fault is not the message's and breaks nothing
    ok, _ = pool.submit([real_ztf_packets(1)[0].read_bytes()], SETTINGS).result(timeout=60)
    assert ok[0].ok and pool.replaced == 0


def test_wait_for_decode_gives_up_within_the_grace_once_stop_is_requested():
    import concurrent.futures as cf

    never: cf.Future = cf.Future()
    stop = threading.Event()
    beats = []
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(DecodeAbandoned):
        wait_for_decode(never, stop, 0.5, lambda: beats.append(1), poll_s=0.05)
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 2.0 and beats
    done: cf.Future = cf.Future()
    done.set_result(("r", 0.0))
    assert wait_for_decode(done, stop, 0.5) == ("r", 0.0)


def _allocating_decode(values, settings, registry_url=""):
    """Decodes by allocating what the value declares: b"alloc:N" asks for N bytes (a decoder that
    trusts a declared size); an impossible size raises MemoryError as numpy does."""
    import numpy as np

    from stream.envelope import DecodeOutcome

    out = []
    for value in values:
        n = int(value.split(b":")[1])
        out.append(DecodeOutcome(reason="counted", detail=str(np.zeros(n, dtype=np.uint8).nbytes)))
    return out, 0.0


def test_in_process_decode_dead_letters_a_memory_error_alone():
    from stream.decode_pool import decode_in_process

    outcomes, _ = decode_in_process([b"alloc:10", b"alloc:%d" % (1 << 62), b"alloc:3"], SETTINGS, "", _allocating_decode)
    assert [o.reason for o in outcomes] == ["counted", DECODE_MEMORY_LIMIT, "counted"]
    assert [outcomes[0].detail, outcomes[2].detail] == ["10", "3"]


def test_a_worker_killed_while_idle_is_replaced_without_blaming_a_message(pool_factory):
    import os
    import signal as sig

    pool = pool_factory(timeout_s=30, worker_memory_mb=0, decode_fn=segfault_decode)
    first, _ = pool.submit([b"a"], SETTINGS).result(timeout=60)
    (worker,) = list(pool._live)
    os.kill(worker.process.pid, sig.SIGKILL)
    worker.process.join(5)
    outcomes, _ = pool.submit([b"bb", b"ccc"], SETTINGS).result(timeout=60)
    assert [o.detail for o in outcomes] == ["2", "3"] and first[0].detail == "1"
    assert pool.replaced == 0


def _pid_decode(values, settings, registry_url=""):
    """Counts bytes like ``segfault_decode`` (crashing on b"crash"), and names the worker's pid."""
    import os

    from stream.envelope import DecodeOutcome

    outcomes, seconds = segfault_decode(values, settings, registry_url)
    return [DecodeOutcome(reason=o.reason, detail=f"{o.detail}:{os.getpid()}") for o in outcomes], seconds


def test_a_batch_is_split_across_workers_in_order_and_a_crash_is_isolated_in_its_chunk():
    pool = DecodePool(2, DecodeLimits(timeout_s=30, worker_memory_mb=0), decode_fn=_pid_decode, min_chunk=4)
    try:
        values = [b"x" * (i + 1) for i in range(8)] + [b"crash"] + [b"y" * (i + 1) for i in range(7)]
        outcomes, seconds = pool.submit(values, SETTINGS).result(timeout=120)
        assert [o.reason for o in outcomes] == ["counted"] * 8 + [DECODE_WORKER_CRASHED] + ["counted"] * 7
        counts = [o.detail.split(":")[0] for o in outcomes if o.reason == "counted"]
        assert counts == [str(i + 1) for i in range(8)] + [str(i + 1) for i in range(7)]
        pids_first = {o.detail.split(":")[1] for o in outcomes[:8]}
        pids_second = {o.detail.split(":")[1] for o in outcomes[9:]}
        assert len(pids_first) == 1 and len(pids_second) == 1 and pids_first != pids_second  # two workers, one chunk each
        assert pool.replaced == 2 and pool.workers == 2 and seconds > 0
        # a batch smaller than two chunks stays whole
        small, _ = pool.submit([b"a", b"bb"], SETTINGS).result(timeout=60)
        assert [o.detail.split(":")[0] for o in small] == ["1", "2"]
    finally:
        pool.close()


def _nice_decode(values, settings, registry_url=""):
    """Names the worker's CPU priority (``os.nice(0)`` reads it) instead of decoding."""
    import os

    from stream.envelope import DecodeOutcome

    return [DecodeOutcome(reason="nice", detail=str(os.nice(0))) for _ in values], 0.0


def test_workers_run_at_the_lower_cpu_priority_asked_for():
    import os

    own = os.nice(0)
    for nice in (0, 7):
        pool = DecodePool(1, DecodeLimits(timeout_s=30, worker_memory_mb=0), decode_fn=_nice_decode, nice=nice)
        try:
            outcomes, _ = pool.submit([b"a"], SETTINGS).result(timeout=60)
            assert outcomes[0].detail == str(min(19, own + nice))
        finally:
            pool.close()
    with pytest.raises(ValueError, match="0..19"):
        DecodePool(1, nice=-1)


@pytest.mark.parametrize("area_bytes", [None, 0, 120_000], ids=["shared-memory", "pipe-only", "areas-too-small-for-some"])
def test_real_packets_decode_the_same_through_shared_memory_or_the_pipe(area_bytes):
    import numpy as np

    from stream.envelope import decode_values

    values = [p.read_bytes() for p in real_ztf_packets(12)] + [None, b"not avro"]
    expected, _ = decode_values(values, SETTINGS)
    kwargs = {} if area_bytes is None else {"shared_memory_bytes": area_bytes}
    pool = DecodePool(2, DecodeLimits(timeout_s=30, worker_memory_mb=1536), min_chunk=4, **kwargs)
    try:
        for _ in range(2):  # the areas are rewound and reused by the next job
            outcomes, _ = pool.submit(values, SETTINGS).result(timeout=120)
            assert [(o.reason, o.detail) for o in outcomes] == [(o.reason, o.detail) for o in expected]
            for got, want in zip(outcomes, expected, strict=True):
                assert [a.key for a in got.items] == [a.key for a in want.items]
                for a, b in zip(got.items, want.items, strict=True):
                    for stamp in ("science", "template", "difference"):
                        x, y = getattr(a, stamp).data, getattr(b, stamp).data
                        assert np.array_equal(x, y, equal_nan=True) and x.dtype == y.dtype and x.flags.writeable
                    assert dict(a.candidate) == dict(b.candidate)
        assert pool.replaced == 0
    finally:
        pool.close()


def test_the_pool_counts_records_whose_history_was_read_the_slow_way(pool_factory):
    """A real ZTF packet with one history file name over the skipper's 191 bytes decodes right,
    the slow way, and the pool counts it (the service exports sc_decode_history_slow_reads_total);
    the untouched packet takes the fast path and adds nothing."""
    from tests.stream.hostile_messages import ztf_alert_with_a_long_history_name

    path = real_ztf_packets(1)[0]
    long_name = ztf_alert_with_a_long_history_name(candid_offset=0)
    pool = pool_factory(timeout_s=30, worker_memory_mb=1536)
    outcomes, _ = pool.submit([path.read_bytes()], SETTINGS).result(timeout=120)
    assert outcomes[0].ok and pool.slow_history_reads == 0
    outcomes, _ = pool.submit([long_name, path.read_bytes(), long_name], SETTINGS).result(timeout=120)
    assert all(o.ok for o in outcomes)
    assert outcomes[0].items[0].alert_id == outcomes[1].items[0].alert_id
    assert pool.slow_history_reads == 2
