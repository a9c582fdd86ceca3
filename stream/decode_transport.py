"""Shared memory between the service and a decode worker: message values in, decoded arrays out.

Through the pipe alone, each alert's ~70 KB message and ~50 KB of decoded stamps were pickled,
written into a socket a few hundred KB at a time, read back by a supervisor thread that needs
the GIL for every piece, and copied again: about a fifth of the service's CPU on two cores.
Each worker now also has two :class:`SharedArea` mappings:

* **in**: before sending a job, the supervisor writes its values one after another into the
  area and sends only their ``(offset, length)`` spans; the worker reads each value back as
  ``bytes``;
* **out**: the worker pickles a block of outcomes with protocol 5, writing every out-of-band
  buffer (the stamps' pixel arrays) into the area and sending only the small pickle and the
  spans; the supervisor copies each buffer into a ``bytearray`` and unpickles over them.

No locks are needed: the supervisor writes the in area only while its worker is idle (between
jobs), and the worker writes the out area only forward within a job, from offset 0 at each
job's start; the supervisor has copied every block out before it sends the next job. Anything
that does not fit (a raw exposure of tens of MB, an oversized batch) travels through the pipe
as before, so the areas bound nothing but speed.

The areas are anonymous files (``memfd_create``): no name to leak after a SIGKILL, no
``/dev/shm`` size limit (64 MiB in a default container) to turn a write into a SIGBUS. Where
``memfd_create`` is missing (not Linux) the pool uses the pipe only.
"""
from __future__ import annotations

import mmap
import os
import pickle
from collections.abc import Sequence
from multiprocessing import context, reduction
from typing import Any

__all__ = ["AREA_BYTES", "SharedArea", "shared_memory_available", "Span"]

#: Bytes of each worker's in and out areas: a chunk of 128 ZTF alerts takes ~9 MB in and ~6 MB
#: out. Pages are only committed when first written.
AREA_BYTES = 32 * 1024 * 1024

#: ``(offset, length)`` of one value or buffer in an area; None for a message without a value.
Span = tuple[int, int] | None


def shared_memory_available() -> bool:
    """Whether this platform can create the areas (``os.memfd_create``: Linux)."""
    return hasattr(os, "memfd_create")


class SharedArea:
    """An anonymous shared mapping of ``size`` bytes that a spawned worker maps too.

    Created by the supervisor; passed to ``multiprocessing`` (spawn) among a worker's start
    arguments, which hands the worker the file descriptor; :meth:`release_fd` once the worker
    has started. Both ends then hold only the mapping.
    """

    def __init__(self, size: int = AREA_BYTES, name: str = "sc-decode", *, _fd: int | None = None) -> None:
        self.size = size
        fd = _fd if _fd is not None else os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            if _fd is None:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._cursor = 0

    def __reduce__(self) -> tuple[Any, ...]:
        # Only meaningful while multiprocessing spawns a process: DupFd registers the descriptor
        # to be inherited, and the child maps the same file.
        if self._fd is None or context.get_spawning_popen() is None:
            raise TypeError("a SharedArea can be handed to a process only while that process is started")
        return (_attach, (reduction.DupFd(self._fd), self.size))

    def release_fd(self) -> None:
        """Close this end's descriptor (the mapping stays); call once the worker has started."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.release_fd()
        self.map.close()

    # -- writing: values (supervisor) or buffers (worker), one after another
    def rewind(self) -> None:
        """Start writing at offset 0 again (a new job)."""
        self._cursor = 0

    def put(self, chunks: Sequence[Any]) -> list[Span] | None:
        """Write ``chunks`` (bytes-like, or None) after what this job wrote already; their spans,
        or None (nothing written) when they do not all fit."""
        views = [None if c is None else memoryview(c).cast("B") for c in chunks]
        if self._cursor + sum(v.nbytes for v in views if v is not None) > self.size:
            return None
        spans: list[Span] = []
        for view in views:
            if view is None:
                spans.append(None)
                continue
            n = view.nbytes
            self.map[self._cursor:self._cursor + n] = view
            spans.append((self._cursor, n))
            self._cursor += n
        return spans

    # -- reading
    def value(self, span: Span) -> bytes | None:
        """One value written by :meth:`put`, as ``bytes`` (a copy)."""
        if span is None:
            return None
        offset, n = span
        return self.map[offset:offset + n]

    def buffers(self, spans: Sequence[Span]) -> list[bytearray]:
        """Writable copies of the buffers at ``spans`` (arrays unpickled over them own them)."""
        out = []
        with memoryview(self.map) as whole:
            for span in spans:
                offset, n = span if span is not None else (0, 0)
                out.append(bytearray(whole[offset:offset + n]))
        return out

    # -- a block of decode outcomes
    def pack(self, obj: Any) -> tuple[bytes, list[Span]] | None:
        """``obj`` pickled with its out-of-band buffers written here: ``(pickle, spans)``, or None
        when the buffers do not fit (send ``obj`` through the pipe instead)."""
        raw: list[pickle.PickleBuffer] = []
        data = pickle.dumps(obj, protocol=5, buffer_callback=raw.append)
        try:
            views = [b.raw() for b in raw]
        except BufferError:  # a non-contiguous buffer: let the pipe carry it
            return None
        spans = self.put(views)
        return None if spans is None else (data, spans)

    def unpack(self, data: bytes, spans: Sequence[Span]) -> Any:
        """The object :meth:`pack` wrote (in the other process's mapping of this area)."""
        return pickle.loads(data, buffers=self.buffers(spans))


def _attach(dup_fd: Any, size: int) -> SharedArea:
    """In the worker: map the area whose descriptor the spawn handed over."""
    area = SharedArea(size, _fd=dup_fd.detach())
    area.release_fd()
    return area
