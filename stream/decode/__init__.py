"""Decoding: Kafka message values (ZTF, Rubin, our exposures) -> :mod:`stream.alert` objects.

Pure: no Kafka or Redis here. Every bad input raises :class:`DecodeError` with a
:class:`Reason` code for the dead-letter record.
"""
from __future__ import annotations

from stream.decode.errors import DecodeError, Reason
from stream.decode.exposure import EXPOSURE_SCHEMA_ID, pack_exposure
from stream.decode.message import decode_message, decode_record, default_resolver, iter_file
from stream.decode.rubin import SchemaRegistryError, SchemaResolver, load_rubin_schema
from stream.decode.stamps import place_in_frame

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
]
