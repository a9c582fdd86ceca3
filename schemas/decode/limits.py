"""Caps every decoder checks before it allocates (the ``[decode]`` section of the service settings)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DecodeSettings"]


@dataclass(frozen=True)
class DecodeSettings:
    #: Cap on the inflated size of one gzip cutout (gzip bomb guard).
    max_inflated_bytes: int = 16 * 1024 * 1024
    #: Cap on one Kafka message value.
    max_message_bytes: int = 10 * 1024 * 1024
    #: Cap on the inflated FITS file of one exposure (a raw ACS/WFC or WFC3/UVIS frame is ~35 MB).
    max_exposure_fits_bytes: int = 128 * 1024 * 1024
    #: Watchdog (``stream.decode_pool``): the longest one message may take to decode before its
    #: worker process is killed and the message dead-lettered as ``decode_timeout``.
    timeout_s: float = 10.0
    #: Watchdog: address-space cap of a decode worker process in MiB (``RLIMIT_AS``); a message
    #: that needs more is dead-lettered as ``decode_memory_limit``. 0 leaves workers uncapped.
    worker_memory_mb: int = 1536
