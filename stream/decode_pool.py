"""The decode watchdog: decoding in worker processes with a time limit and a memory limit.

A decoder is pure code fed hostile bytes; a bug in it (an Avro block that claims 2**62 empty
records, a declared size nobody checked) can loop forever or allocate gigabytes. This pool makes
such a bug cost one dead letter instead of the service:

* each worker process caps its own address space (``resource.setrlimit(RLIMIT_AS)``,
  ``decode.worker_memory_mb``), so a runaway allocation raises ``MemoryError`` in the worker
  (or the kernel kills it) instead of growing the service until the node's OOM killer acts;
* the worker decodes a batch one message at a time and writes the index of the message in
  progress to a shared-memory counter before each, so the supervisor always knows which message
  is in progress; a message that keeps the counter still for longer than ``decode.timeout_s``
  (checked every :data:`PROGRESS_CHECK_S` at most) has its worker killed (SIGKILL: a loop in C
  code cannot be interrupted more gently);
* outcomes come back in blocks (every :data:`FLUSH_S` and at the end of the job), not one pipe
  message each: each receive costs the supervisor thread the GIL, which the service's scoring
  thread holds most of the time, and one receive per message made decoding in the service twice
  as slow as decoding alone; the values and the blocks' pixel arrays travel through two shared
  memory areas per worker (:mod:`stream.decode_transport`), the pipe carrying only small
  pickles and offsets;
* the message responsible (the one in progress when a limit broke) becomes a dead letter with
  reason ``decode_timeout`` or ``decode_memory_limit`` (``decode_worker_crashed`` for any other
  death, a segfault say), a fresh worker replaces the broken one, and the rest of the batch is
  decoded normally. A worker that *dies* under a message (a signal or a crash, not a limit the
  pool measured) may have been killed from outside (the node's OOM killer, an operator), so that
  message is first decoded once more in a fresh worker and blamed only if that one dies too:
  a hostile message costs two restarts, a good one is never dead-lettered for someone else's
  kill. Outcomes already received are kept; the few decoded before the culprit but not yet sent
  are decoded again by the fresh worker, so isolating the culprit costs one restart (two for a
  death) rather than a bisection's ``2 log2(n)`` reruns, each of which could wait out the limit.

Every wait is bounded: a worker's start-up by ``STARTUP_TIMEOUT_S``, each message by
``decode.timeout_s`` (+ :data:`PROGRESS_CHECK_S`), so a batch's future resolves within about
``n * decode.timeout_s`` at worst (every message hostile) and within one ``decode.timeout_s``
per hostile message otherwise. A pool of several workers splits each batch into contiguous
chunks, one per worker (:meth:`DecodePool.submit`); each chunk has these guarantees.

A :class:`~schemas.decode.SchemaRegistryError` (the registry is down or misconfigured: our fault,
not the message's) is not isolated: it fails the whole batch's future, and the service pauses and
retries. Nothing in this module touches Kafka.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from stream.decode_transport import AREA_BYTES, SharedArea, shared_memory_available

__all__ = [
    "FLUSH_S",
    "PROGRESS_CHECK_S",
    "DECODE_TIMEOUT",
    "DECODE_MEMORY_LIMIT",
    "DECODE_WORKER_CRASHED",
    "STARTUP_TIMEOUT_S",
    "DecodeLimits",
    "DecodePool",
    "DecodeWorkerError",
    "DecodeAbandoned",
    "wait_for_decode",
    "decode_in_process",
]

log = structlog.get_logger(__name__)

#: Dead-letter reasons for a message that broke a limit of the watchdog.
DECODE_TIMEOUT = "decode_timeout"
DECODE_MEMORY_LIMIT = "decode_memory_limit"
DECODE_WORKER_CRASHED = "decode_worker_crashed"

#: The longest a fresh worker may take to import the decoders and report ready (a slow disk,
#: a cold cache); past it the pool raises: a worker that cannot start is our fault.
STARTUP_TIMEOUT_S = 120.0

#: A worker sends the outcomes it has at least this often (seconds), and at the end of a job.
FLUSH_S = 0.05

#: The supervisor looks at a busy worker's progress counter at least this often (seconds).
PROGRESS_CHECK_S = 0.25

#: A decode function: (message values, decode settings, registry URL) -> (outcomes, seconds).
DecodeFn = Callable[[Sequence[bytes | None], Any, str], tuple[list[Any], float]]


class DecodeWorkerError(RuntimeError):
    """A decode worker could not be started or answered nonsense: a fault of ours, it stops the line."""


@dataclass(frozen=True)
class DecodeLimits:
    """The watchdog's limits (from the ``[decode]`` settings)."""

    #: Longest one message may take to decode.
    timeout_s: float = 10.0
    #: Address-space cap of a worker process in MiB; 0 leaves it uncapped.
    worker_memory_mb: int = 1536


# ---------------------------------------------------------------- the worker process side

def _default_decode_fn() -> DecodeFn:
    from stream.envelope import decode_values

    return decode_values


def _address_space_bytes() -> int:
    """Current virtual size of this process (Linux), 0 where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _worker_main(conn: multiprocessing.connection.Connection, progress: Any, memory_mb: int, decode_fn: DecodeFn | None,
                 nice: int = 0, areas: tuple[SharedArea, SharedArea] | None = None) -> None:
    """Worker loop: import, lower its priority by ``nice``, cap memory, then decode each job's values one at a time.

    Protocol (supervisor -> worker): a job ``(values, spans, settings, registry_url)``: the
    values themselves, or None and their spans in the in area (:mod:`stream.decode_transport`);
    None to stop. (worker -> supervisor): ``("ready", vm_bytes)`` once; per job, blocks in
    message order, ``("outcomes", [(kind, payload), ...])`` or the same list packed in the out
    area, ``("outcomes_shm", (pickle, spans))``, each entry ``("outcome", outcome)`` or
    ``("memory", detail)`` for a MemoryError; ``("registry", detail)`` ends the job early; then
    ``("done", slow_reads)``, the worker's running total of records whose history it read in
    full (:func:`schemas.decode.avro.slow_history_reads`). Before decoding message ``i`` of a
    job, ``progress.value = i``.
    """
    # Our own threads only: a BLAS thread pool would reserve address space under the cap.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when workers stop
    from stream.stack import die_with_parent

    die_with_parent()
    if nice > 0:
        os.nice(nice)
    fn = decode_fn or _default_decode_fn()
    from schemas.decode import SchemaRegistryError, slow_history_reads

    if memory_mb > 0:
        import resource

        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn.send(("ready", _address_space_bytes()))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        values, spans, settings, registry_url = job
        if spans is not None and areas is not None:
            values = [areas[0].value(span) for span in spans]
        out_area = areas[1] if areas is not None else None
        if out_area is not None:
            out_area.rewind()
        last_flush = time.perf_counter()
        block: list[tuple[str, Any]] = []
        for i, value in enumerate(values):
            progress.value = i
            try:
                outcomes, _ = fn([value], settings, registry_url)
                block.append(("outcome", outcomes[0]))
            except MemoryError as exc:
                block.append(("memory", f"MemoryError under decode.worker_memory_mb = {memory_mb}: {exc}"[:300]))
            except SchemaRegistryError as exc:
                if block:
                    _send_outcomes(conn, block, out_area)
                    block = []
                conn.send(("registry", str(exc)))
                break
            now = time.perf_counter()
            if now - last_flush >= FLUSH_S:
                _send_outcomes(conn, block, out_area)
                block, last_flush = [], now
        if block:
            _send_outcomes(conn, block, out_area)
        conn.send(("done", slow_history_reads()))


def _send_outcomes(conn: multiprocessing.connection.Connection, block: list[tuple[str, Any]], out_area: SharedArea | None) -> None:
    """A block of outcomes to the supervisor: its arrays through the out area where they fit."""
    packed = out_area.pack(block) if out_area is not None else None
    if packed is None:
        conn.send(("outcomes", block))
    else:
        conn.send(("outcomes_shm", packed))


# ---------------------------------------------------------------- the supervisor side

class _Worker:
    """One worker process and its end of the pipe."""

    def __init__(self, ctx: Any, limits: DecodeLimits, decode_fn: DecodeFn | None, nice: int = 0,
                 shared_memory_bytes: int = 0) -> None:
        self._kill_lock = threading.Lock()
        self._killed = False
        self.conn, child = ctx.Pipe(duplex=True)
        #: Index (within the current job) of the message the worker is decoding; -1 before the first.
        self.progress = ctx.RawValue("q", -1)
        #: (in, out) shared areas (:mod:`stream.decode_transport`), or None: the pipe carries everything.
        self.areas = ((SharedArea(shared_memory_bytes, "sc-decode-in"), SharedArea(shared_memory_bytes, "sc-decode-out"))
                      if shared_memory_bytes > 0 else None)
        self.process = ctx.Process(target=_worker_main, args=(child, self.progress, limits.worker_memory_mb, decode_fn, nice, self.areas),
                                   name="decode-worker", daemon=True)
        try:
            self.process.start()
        finally:
            child.close()
            for area in self.areas or ():
                area.release_fd()
        if not self.conn.poll(STARTUP_TIMEOUT_S):
            self.kill()
            raise DecodeWorkerError(f"decode worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
        try:
            kind, vm_bytes = self.conn.recv()
        except EOFError:
            code = self.process.exitcode
            self.kill()
            raise DecodeWorkerError(f"decode worker died while starting (exit code {code}); "
                                    f"is decode.worker_memory_mb = {limits.worker_memory_mb} too small?") from None
        if kind != "ready":
            self.kill()
            raise DecodeWorkerError(f"decode worker said {kind!r} instead of ready")
        self.started_vm_bytes = int(vm_bytes)
        #: the worker's own running total of slow history reads, as last reported
        self.slow_history_reads = 0

    def kill(self) -> None:
        """Kill the process and close the pipe; safe to call twice and from two threads (close()
        and the worker's supervisor may both retire it)."""
        with self._kill_lock:
            if self._killed:
                return
            self._killed = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()
        for area in self.areas or ():
            try:
                area.close()
            except BufferError:  # the supervisor is copying a block out this instant: freed with the worker
                pass

    def stop(self) -> None:
        try:
            if not self._killed:
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(1)
        self.kill()


@dataclass
class _Job:
    values: list[bytes | None]
    settings: Any
    registry_url: str
    future: cf.Future


class _LimitBroken(Exception):
    """A message broke a limit: ``index`` (within the values sent), how many outcomes had been
    ``received`` (all before ``index``), and the dead-letter reason."""

    def __init__(self, index: int, received: int, reason: str, detail: str, *, died: bool = False) -> None:
        super().__init__(detail)
        self.index, self.received, self.reason, self.detail = index, received, reason, detail
        #: the worker died under the message (a signal or a crash), not a limit the pool measured:
        #: something outside the message (the node's OOM killer, an operator) may have killed it
        self.died = died


class _WorkerGone(Exception):
    """The worker was dead before it took the batch (killed while idle): replace it, blame no message."""


class DecodePool:
    """Decode batches in ``workers`` supervised worker processes; :meth:`submit` returns a future.

    The future's result is ``(outcomes, seconds)`` like :func:`stream.envelope.decode_values`,
    one outcome per value, with watchdog dead letters in place of the messages that broke a limit.
    It raises ``SchemaRegistryError`` when the registry cannot answer, and
    :class:`DecodeWorkerError` when a worker cannot be started.
    """

    def __init__(self, workers: int, limits: DecodeLimits | None = None, *, decode_fn: DecodeFn | None = None,
                 outcome_factory: Callable[..., Any] | None = None, min_chunk: int = 16, nice: int = 0,
                 shared_memory_bytes: int = AREA_BYTES) -> None:
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        if not 0 <= nice <= 19:
            raise ValueError(f"decode worker nice must be 0..19, got {nice}")
        self.limits = limits or DecodeLimits()
        #: How much lower than the service's the workers' CPU priority is (``os.nice``): see
        #: ``batch.decode_worker_nice``.
        self.nice = nice
        #: Bytes of each worker's two shared areas (:mod:`stream.decode_transport`) that carry values
        #: and decoded arrays; what does not fit, and everything when 0 (or where the platform
        #: has no ``memfd_create``), goes through the pipe.
        self.shared_memory_bytes = shared_memory_bytes if shared_memory_available() else 0
        #: A batch is split across workers only into chunks of at least this many messages
        #: (smaller ones cost more in hand-offs than they gain).
        self.min_chunk = min_chunk
        self._decode_fn = decode_fn
        self._outcome = outcome_factory
        self._ctx = multiprocessing.get_context("spawn")  # not fork: librdkafka threads
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        #: Workers retired and started anew: a message broke a limit, or a worker died (tests, metrics).
        self.replaced = 0
        #: records the workers read with their history in full (:func:`schemas.decode.avro.slow_history_reads`)
        self.slow_history_reads = 0
        self._lock = threading.Lock()
        self._live: set[_Worker] = set()
        self._threads = [threading.Thread(target=self._serve, name=f"decode-supervisor-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def workers(self) -> int:
        """How many worker processes (one supervisor thread each) decode in parallel."""
        return len(self._threads)

    # -- public
    def submit(self, values: Sequence[bytes | None], settings: Any, registry_url: Any = "") -> cf.Future:
        """Decode ``values``; the future's result is ``(outcomes in the order of values, seconds)``.

        A batch is split into up to :attr:`workers` contiguous chunks of at least
        ``min_chunk`` messages, one job each, so every worker is busy on one batch (the service
        holds only ``batch.max_in_flight`` batches). Each chunk keeps the per-message guarantees
        (a culprit is isolated within its chunk). ``seconds`` is the sum over chunks: decode
        work, comparable with one process's decode time, not the batch's wall time.
        """
        if self._closed.is_set():
            raise RuntimeError("decode pool is closed")
        values = list(values)
        parts = max(1, min(self.workers, len(values) // max(1, self.min_chunk)))
        if parts == 1:
            fut: cf.Future = cf.Future()
            self._jobs.put(_Job(values, settings, registry_url, fut))
            return fut
        step = -(-len(values) // parts)
        chunks: list[cf.Future] = []
        for start in range(0, len(values), step):
            chunk: cf.Future = cf.Future()
            self._jobs.put(_Job(values[start:start + step], settings, registry_url, chunk))
            chunks.append(chunk)
        return _gather(chunks)

    def close(self) -> None:
        """Stop every worker now (jobs not started are cancelled; a running one is killed)."""
        self._closed.set()
        for _ in self._threads:
            self._jobs.put(None)
        with self._lock:
            live = list(self._live)
        for w in live:
            w.kill()
        for t in self._threads:
            t.join(5)

    # -- supervisor thread
    def _serve(self) -> None:
        from schemas.decode import SchemaRegistryError

        holder: list[_Worker | None] = [None]  # this thread's worker, replaced as limits break
        try:
            while True:
                job = self._jobs.get()
                if job is None or self._closed.is_set():
                    if job is not None:
                        job.future.cancel()
                    return
                if not job.future.set_running_or_notify_cancel():
                    continue
                try:
                    job.future.set_result(self._run(holder, job))
                except SchemaRegistryError as exc:  # the worker is fine: only the registry failed
                    job.future.set_exception(exc)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting service, never lost
                    if holder[0] is not None:
                        self._retire(holder[0])
                        holder[0] = None
                    job.future.set_exception(exc)
        finally:
            if holder[0] is not None:
                self._retire(holder[0], gently=True)

    def _start_worker(self) -> _Worker:
        w = _Worker(self._ctx, self.limits, self._decode_fn, self.nice, self.shared_memory_bytes)
        with self._lock:
            self._live.add(w)
        return w

    def _retire(self, worker: _Worker, *, gently: bool = False) -> None:
        with self._lock:
            self._live.discard(worker)
        if gently:
            worker.stop()
        else:
            worker.kill()

    def _run(self, holder: list[_Worker | None], job: _Job) -> tuple[list[Any], float]:
        """Decode every value of ``job``, isolating the messages that break a limit."""
        n = len(job.values)
        outcomes: list[Any] = [None] * n
        t0 = time.perf_counter()
        todo = list(range(n))  # indices into job.values still without an outcome, in order
        gone_in_a_row = 0
        died_under: set[int] = set()  # messages a worker already died under once (retried once, then blamed)
        while todo:
            if self._closed.is_set():
                raise DecodeWorkerError("decode pool closed while a batch was decoding")
            if holder[0] is None:
                holder[0] = self._start_worker()
            worker = holder[0]
            try:
                replace = self._run_stretch(worker, job, todo, outcomes)
                todo = []
            except _WorkerGone as gone:
                gone_in_a_row += 1
                if gone_in_a_row > 3:
                    raise DecodeWorkerError(f"decode workers keep dying before taking a batch ({gone})") from None
                log.warning("decode_worker_gone", detail=str(gone))
                self._retire(worker)
                holder[0] = None
                continue
            except _LimitBroken as broken:
                culprit = todo[broken.index]
                if broken.died and culprit not in died_under:
                    # A worker killed from outside (the node's OOM killer choosing it, an operator, a
                    # chaos test) looks the same as one a message killed: the message gets a second,
                    # fresh worker before it is blamed, so a good alert is never dead-lettered for it.
                    died_under.add(culprit)
                    log.warning("decode_worker_died_retrying", reason=broken.reason, detail=broken.detail,
                                message_index=culprit, batch_size=n)
                    todo = todo[broken.received:]
                else:
                    outcomes[culprit] = self._dead_letter(broken.reason, broken.detail)
                    log.warning("decode_limit_broken", reason=broken.reason, detail=broken.detail, message_index=culprit,
                                batch_size=n)
                    # decoded before the culprit but not yet sent: decoded again by the fresh worker
                    todo = todo[broken.received:broken.index] + todo[broken.index + 1:]
                replace = True
            gone_in_a_row = 0
            if replace:
                self._retire(worker)
                holder[0] = None
                self.replaced += 1
        return outcomes, time.perf_counter() - t0

    def _run_stretch(self, worker: _Worker, job: _Job, todo: list[int], outcomes: list[Any]) -> bool:
        """Send the values at ``todo``; fill ``outcomes`` as blocks come.

        Returns whether the worker must be replaced (it hit its memory cap once and may be
        fragmented); raises :class:`_LimitBroken` when a message broke a limit.
        """
        values = [job.values[i] for i in todo]
        try:
            if not worker.process.is_alive():
                raise _WorkerGone(f"exit code {worker.process.exitcode}")
            worker.progress.value = -1
            spans = None
            if worker.areas is not None:
                worker.areas[0].rewind()
                spans = worker.areas[0].put(values)
            worker.conn.send((values if spans is None else None, spans, job.settings, job.registry_url))
        except OSError as exc:  # died while idle: no message of this batch is to blame
            raise _WorkerGone(type(exc).__name__) from None
        timeout = self.limits.timeout_s
        check = min(PROGRESS_CHECK_S, timeout / 4)
        received = 0
        memory_culprit: int | None = None
        seen, seen_at = -1, time.monotonic()
        while True:
            ready = worker.conn.poll(check)
            at = worker.progress.value
            now = time.monotonic()
            if at != seen:
                seen, seen_at = at, now
            if not ready:
                if now - seen_at <= timeout:
                    continue
                if received < len(values):
                    raise _LimitBroken(max(seen, received), received, DECODE_TIMEOUT,
                                       f"decoding took longer than decode.timeout_s = {timeout:g} s; worker killed")
                raise DecodeWorkerError("decode worker went silent after its last outcome")
            if self._closed.is_set():
                raise DecodeWorkerError("decode pool closed while a batch was decoding")
            try:
                kind, payload = worker.conn.recv()
            except (EOFError, OSError):
                worker.process.join(5)
                code = worker.process.exitcode
                if received >= len(values):
                    raise DecodeWorkerError(f"decode worker died after its last outcome (exit code {code})") from None
                culprit = max(int(worker.progress.value), received)
                if code == -signal.SIGKILL:
                    raise _LimitBroken(culprit, received, DECODE_MEMORY_LIMIT,
                                       "decode worker was killed twice under this message (SIGKILL: out of memory?)",
                                       died=True) from None
                raise _LimitBroken(culprit, received, DECODE_WORKER_CRASHED,
                                   f"decode worker died twice under this message (exit code {code})", died=True) from None
            if kind == "outcomes_shm" and worker.areas is not None:
                kind, payload = "outcomes", worker.areas[1].unpack(*payload)
            if kind == "outcomes":
                if received + len(payload) > len(values):
                    raise DecodeWorkerError(f"decode worker sent {received + len(payload)} outcomes for {len(values)} values")
                for entry_kind, entry in payload:
                    index = todo[received]
                    if entry_kind == "memory":
                        outcomes[index] = self._dead_letter(DECODE_MEMORY_LIMIT, entry)
                        memory_culprit = index
                    else:
                        outcomes[index] = entry
                    received += 1
            elif kind == "registry":
                from schemas.decode import SchemaRegistryError

                self._expect_done(worker)
                raise SchemaRegistryError(payload)
            elif kind == "done":
                self._tally_slow_reads(worker, int(payload))
                if received != len(values):
                    raise DecodeWorkerError(f"decode worker finished with {received} outcomes for {len(values)} values")
                if memory_culprit is not None:
                    log.warning("decode_limit_broken", reason=DECODE_MEMORY_LIMIT, message_index=memory_culprit,
                                batch_size=len(job.values))
                return memory_culprit is not None
            else:
                raise DecodeWorkerError(f"decode worker sent {kind!r}")

    def _tally_slow_reads(self, worker: _Worker, reported: int) -> None:
        """Add what ``worker`` read slowly since its last job (it reports its running total)."""
        with self._lock:
            self.slow_history_reads += max(0, reported - worker.slow_history_reads)
        worker.slow_history_reads = reported

    @staticmethod
    def _expect_done(worker: _Worker) -> None:
        if worker.conn.poll(5):
            try:
                worker.conn.recv()
            except (EOFError, OSError):
                pass

    def _dead_letter(self, reason: str, detail: str) -> Any:
        if self._outcome is not None:
            return self._outcome(reason=reason, detail=detail)
        from stream.envelope import DecodeOutcome

        return DecodeOutcome(reason=reason, detail=detail)


def _gather(chunks: list[cf.Future]) -> cf.Future:
    """One future for a batch decoded in chunks: ``(outcomes of every chunk in order, summed
    seconds)``; the first chunk's exception (a registry failure, a worker that cannot start)
    is the batch's. Cancelling it cancels the chunks not yet started."""
    whole: cf.Future = cf.Future()
    lock = threading.Lock()
    left = [len(chunks)]

    def one_done(_: cf.Future) -> None:
        with lock:
            left[0] -= 1
            if left[0] or whole.done():
                return
        if whole.cancelled():
            return
        outcomes: list[Any] = []
        seconds = 0.0
        try:
            for chunk in chunks:
                got, took = chunk.result(timeout=0)
                outcomes.extend(got)
                seconds += took
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting service, never lost
            _settle(whole, exc=exc)
            return
        _settle(whole, result=(outcomes, seconds))

    def cancel_chunks(fut: cf.Future) -> None:
        if fut.cancelled():
            for chunk in chunks:
                chunk.cancel()

    whole.add_done_callback(cancel_chunks)
    for chunk in chunks:
        chunk.add_done_callback(one_done)
    return whole


def _settle(fut: cf.Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    """Set a result or exception unless the future was cancelled meanwhile (a race with stop)."""
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except cf.InvalidStateError:
        pass


class DecodeAbandoned(RuntimeError):
    """Stop was requested and the batch's decode did not finish within the grace period."""


def wait_for_decode(future: cf.Future, stop: threading.Event, stop_grace_s: float,
                    heartbeat: Callable[[], None] | None = None, *, poll_s: float = 0.2) -> Any:
    """``future.result()``, but never forever: once ``stop`` is set, at most ``stop_grace_s`` more.

    The pool bounds every decode by its limits, so the future resolves on its own; this is the
    second bound, for SIGTERM: the service must stop within a stated time even while a hostile
    batch is being isolated. ``heartbeat`` is called while waiting (the wait is progress, not a
    stalled loop: liveness stays green).
    """
    stop_deadline: float | None = None
    while True:
        try:
            return future.result(timeout=poll_s)
        except cf.TimeoutError:
            pass
        if heartbeat is not None:
            heartbeat()
        if stop.is_set():
            now = time.monotonic()
            if stop_deadline is None:
                stop_deadline = now + stop_grace_s
            elif now >= stop_deadline:
                future.cancel()
                raise DecodeAbandoned(f"stop requested; decode still running after {stop_grace_s:g} s")


def decode_in_process(values: Sequence[bytes | None], settings: Any, registry_url: Any = "",
                      decode_fn: DecodeFn | None = None) -> tuple[list[Any], float]:
    """Decode in the calling thread (``batch.decode_workers = 0``): no time or memory limit, but a
    ``MemoryError`` from one message still dead-letters that message alone."""
    fn = decode_fn or _default_decode_fn()
    t0 = time.perf_counter()
    outcomes: list[Any] = []
    for value in values:
        try:
            outcomes.extend(fn([value], settings, registry_url)[0])
        except MemoryError as exc:
            from stream.envelope import DecodeOutcome

            outcomes.append(DecodeOutcome(reason=DECODE_MEMORY_LIMIT, detail=f"MemoryError: {exc}"[:300]))
    return outcomes, time.perf_counter() - t0
