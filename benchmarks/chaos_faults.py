"""The chaos suite's faults: how each is injected into a running group and released.

Each fault acts on a :class:`Target`: the embedded stack (its broker and Redis processes), the
members (each the leader of its own process group, so a kill reaches its decode workers) and,
for ``redis_net_cut``, the proxy between the victim member and Redis. The victim is member 0.

* ``kill_member``: SIGKILL to the victim's process group (the service and its decode workers, as
  a container's OOM kill or a node loss), restarted after ``restart_delay_s`` like Kubernetes
  restarts a container (same environment and metrics port).
* ``redis_stop``: SIGSTOP to redis-server, SIGCONT at release (a frozen server: connections are
  accepted by the kernel, nothing answers; clients time out).
* ``broker_stop``: SIGSTOP / SIGCONT to the Tansu broker (memory only: stopping keeps its data;
  killing it would lose every topic, so it is never killed).
* ``decode_worker_kill``: SIGKILL to one decode worker of the victim (psutil children), once.
* ``cpu_starve``: the victim's process group duty-cycled with SIGSTOP/SIGCONT, running
  ``duty`` of every ``period_s`` (default 20 ms of 100 ms), the way a CFS quota (a Kubernetes CPU
  limit) throttles a container: run until the quota is spent, then wait for the next period.
  Chosen over pinning plus a CPU hog because a hog on this shared 2-core machine would starve
  the broker, Redis and other people's work too, and its effect depends on the scheduler's
  mood; the duty cycle starves the victim alone, by a stated amount.
* ``redis_net_cut``: the victim reaches Redis through :class:`benchmarks.tcp_proxy.TcpProxy`;
  cut = open connections reset and new ones refused, until release (no root for iptables; this
  models a cut link whose ends see resets, not packet loss).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULTS", "VICTIM", "Fault", "Target", "Injector", "decode_workers_of"]


@dataclass
class Target:
    """What a fault acts on. ``members[i]`` is member i's current process; ``respawn(i)`` starts it again."""

    stack: Any
    members: list[subprocess.Popen]
    respawn: Callable[[int], None]
    proxy: Any = None
    #: member indexes the harness killed on purpose (not counted as crashes until restarted)
    killed: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    #: True: held for the plan's hold time, then released; False: instantaneous (release = inject)
    held: bool
    #: which members must say they are down: "victim", "all" or "none"
    affects: str
    #: the gauge that must read 0 on an affected member (None: none named)
    gauge: str | None
    #: the victim reaches Redis through the cuttable proxy
    needs_proxy: bool = False
    #: a crash after publish, before the Redis mark: the documented duplicate window (one batch per kill)
    kills_member: bool = False

    def expect_down(self, member: int) -> bool:
        return self.affects == "all" or (self.affects == "victim" and member == VICTIM)


VICTIM = 0

FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("kill_member", "SIGKILL of member 0's process group, restarted after the restart delay", held=True,
          affects="victim", gauge=None, kills_member=True),
    Fault("redis_stop", "SIGSTOP of redis-server for the hold, then SIGCONT", held=True, affects="all", gauge="redis_up"),
    Fault("broker_stop", "SIGSTOP of the Tansu broker for the hold, then SIGCONT", held=True, affects="all", gauge="kafka_up"),
    Fault("decode_worker_kill", "SIGKILL of one decode worker of member 0", held=False, affects="none", gauge=None),
    Fault("cpu_starve", "member 0 duty-cycled with SIGSTOP/SIGCONT (20 ms of every 100 ms) for the hold", held=True,
          affects="none", gauge=None),
    Fault("redis_net_cut", "member 0's link to Redis (a userspace proxy) cut for the hold: connections reset, new ones refused",
          held=True, affects="victim", gauge="redis_up", needs_proxy=True),
)}


def decode_workers_of(pid: int) -> list[int]:
    """The decode worker processes of the service ``pid`` (multiprocessing ``spawn`` children; its resource tracker left out)."""
    import psutil

    out = []
    for child in psutil.Process(pid).children():
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing.spawn" in cmd or "spawn_main" in cmd:
            if "resource_tracker" not in cmd:
                out.append(child.pid)
    return out


class _DutyCycle(threading.Thread):
    """SIGSTOP / SIGCONT a process group so it runs ``duty`` of every ``period_s``."""

    def __init__(self, pgid: int, duty: float = 0.2, period_s: float = 0.1) -> None:
        super().__init__(name="chaos-duty-cycle", daemon=True)
        self.pgid, self.duty, self.period_s = pgid, duty, period_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                os.killpg(self.pgid, signal.SIGSTOP)
                time.sleep(self.period_s * (1 - self.duty))
                os.killpg(self.pgid, signal.SIGCONT)
                self._stop_event.wait(self.period_s * self.duty)
        except ProcessLookupError:
            return
        finally:
            try:
                os.killpg(self.pgid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


class Injector:
    """Injects ``fault`` into ``target`` and releases it; ``cleanup`` always leaves everything running."""

    def __init__(self, fault: Fault, target: Target) -> None:
        self.fault, self.target = fault, target
        self._duty: _DutyCycle | None = None
        self.details: dict[str, Any] = {}

    def inject(self) -> None:
        name, t = self.fault.name, self.target
        victim = t.members[VICTIM]
        if name == "kill_member":
            t.killed.add(VICTIM)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
            self.details["killed_pid"] = victim.pid
        elif name == "redis_stop":
            t.stack.pause_service("redis")
        elif name == "broker_stop":
            t.stack.pause_service("tansu")
        elif name == "decode_worker_kill":
            workers = decode_workers_of(victim.pid)
            if not workers:
                raise RuntimeError(f"member {VICTIM} (pid {victim.pid}) has no decode worker to kill")
            os.kill(workers[0], signal.SIGKILL)
            self.details.update(killed_worker_pid=workers[0], workers_before=len(workers))
        elif name == "cpu_starve":
            self._duty = _DutyCycle(victim.pid)
            self._duty.start()
            self.details.update(duty=self._duty.duty, period_s=self._duty.period_s)
        elif name == "redis_net_cut":
            t.proxy.cut()
        else:
            raise ValueError(f"unknown fault {name!r}")

    def release(self) -> None:
        name, t = self.fault.name, self.target
        if name == "kill_member":
            t.respawn(VICTIM)
            t.killed.discard(VICTIM)
        elif name != "decode_worker_kill":  # instantaneous: nothing to release
            self.cleanup()

    def cleanup(self) -> None:
        """Whatever happened: nothing left stopped or cut."""
        t = self.target
        if self._duty is not None:
            self._duty.stop()
            self._duty = None
        if self.fault.name == "redis_stop":
            t.stack.resume_service("redis")
        elif self.fault.name == "broker_stop":
            t.stack.resume_service("tansu")
        elif self.fault.name == "redis_net_cut" and t.proxy is not None and t.proxy.is_cut:
            t.proxy.restore()
