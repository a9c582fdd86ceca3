"""Decoding: Kafka message values (ZTF, Rubin, our exposures) -> :mod:`schemas.alert` objects.

Pure: no Kafka or Redis here. Every bad input raises :class:`DecodeError` with a
:class:`Reason` code for the dead-letter record.
"""
from __future__ import annotations

from schemas.decode.avro import slow_history_reads
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.exposure import EXPOSURE_SCHEMA_ID, pack_exposure
from schemas.decode.message import decode_message, decode_record, default_resolver, iter_file
from schemas.decode.rubin import SchemaRegistryError, SchemaResolver, load_rubin_schema
from schemas.decode.stamps import place_in_frame

__all__ = [
    "DecodeError",
    "Reason",
    "decode_message",
    "decode_record",
    "iter_file",
    "default_resolver",
    "SchemaResolver",
    "SchemaRegistryError",
    "load_rubin_schema",
    "pack_exposure",
    "EXPOSURE_SCHEMA_ID",
    "place_in_frame",
    "slow_history_reads",
]
