"""Caps every decoder checks before it allocates (the ``[decode]`` section of the service settings)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DecodeSettings"]


@dataclass(frozen=True)
class DecodeSettings:
    """Every size cap of decoding; each is checked against what an input *declares* before allocating."""

    #: Cap on the inflated size of one gzip cutout (gzip bomb guard).
    max_inflated_bytes: int = 16 * 1024 * 1024
    #: Cap on one Kafka message value.
    max_message_bytes: int = 10 * 1024 * 1024
    #: Cap on the inflated FITS file of one exposure (a raw ACS/WFC or WFC3/UVIS frame is ~35 MB).
    max_exposure_fits_bytes: int = 128 * 1024 * 1024
    #: Cap on the records of one Kafka message (ZTF and Rubin send one; Spark part files are
    #: read as files, record by record, not as one message).
    max_records_per_message: int = 1000
    #: Cap on one inflated Avro block (records are read from it; deflate/snappy/... bombs stop here).
    #: Java and Spark writers cut blocks near 64 kB; a ZTF alert is one ~70 kB block.
    max_block_bytes: int = 32 * 1024 * 1024
    #: Cap on what all the Avro blocks of one message inflate to together (a message of 1,000
    #: tiny bzip2 blocks, each under the block cap, held a worker for its whole timeout).
    max_inflated_message_bytes: int = 64 * 1024 * 1024
    #: Watchdog (``stream.decode_pool``): the longest one message may take to decode before its
    #: worker process is killed and the message dead-lettered as ``decode_timeout``.
    timeout_s: float = 10.0
    #: Watchdog: address-space cap of a decode worker process in MiB (``RLIMIT_AS``); a message
    #: that needs more is dead-lettered as ``decode_memory_limit``. 0 leaves workers uncapped.
    worker_memory_mb: int = 1536
