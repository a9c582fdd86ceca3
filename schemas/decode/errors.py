"""The one error type decoders raise, with a reason code for dead-letter records."""
from __future__ import annotations

from enum import Enum

__all__ = ["Reason", "DecodeError"]


class Reason(str, Enum):
    """Why an input was refused. The value is what goes in the dead-letter ``reason`` header."""

    EMPTY = "empty"                          # zero-length message
    TOO_LARGE = "too_large"                  # message over decode.max_message_bytes
    UNKNOWN_FORMAT = "unknown_format"        # neither Avro container nor Confluent wire
    BAD_MAGIC = "bad_magic"                  # Confluent wire with a magic byte other than 0
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"  # schema id not in the registry or the shipped schemas
    TRUNCATED_AVRO = "truncated_avro"        # Avro ended early / could not be read
    MISSING_FIELD = "missing_field"          # a required field absent or null
    INVALID_FIELD = "invalid_field"          # a field with an impossible value
    CORRUPT_GZIP = "corrupt_gzip"            # cutout gzip stream broken
    GZIP_BOMB = "gzip_bomb"                  # cutout inflates past decode.max_inflated_bytes
    NOT_FITS = "not_fits"                    # cutout is not FITS (e.g. JPEG pre-survey packets)
    JPEG_CUTOUT = "jpeg_cutout"              # cutout is a JPEG image (ZTF pre-survey test packets)
    BAD_FITS = "bad_fits"                    # FITS header/data inconsistent or truncated
    UNSUPPORTED_BITPIX = "unsupported_bitpix"
    BAD_NAXIS = "bad_naxis"                  # not a 2-D image where one is needed
    ALL_NAN = "all_nan"                      # a stamp with no finite pixel
    BAD_STAMP_SHAPE = "bad_stamp_shape"      # a stamp larger than the frame or empty
    BAD_SCHEMA = "bad_schema"                # writer schema unusable: unparseable, zero-size, not an alert record
    BAD_FIELD_TYPE = "bad_field_type"        # a field of the wrong type (a string candid, a cutout given as a long)
    BAD_FITS_HEADER = "bad_fits_header"      # FITS header declares impossible or over-cap sizes (NAXISn, ZNAXISn, ZTILEn)
    UNSUPPORTED_CODEC = "unsupported_codec"  # Avro container codec we do not read
    TOO_MANY_RECORDS = "too_many_records"    # a container over decode.max_records_per_message
    DECODE_MEMORY_LIMIT = "decode_memory_limit"  # decoding this input ran out of memory (MemoryError)
    NOT_A_REGULAR_FILE = "not_a_regular_file"    # a device, FIFO, socket (or a link to one) given as an input file


class DecodeError(ValueError):
    """An input that cannot become an alert. ``reason`` is a :class:`Reason`; ``detail`` says more."""

    def __init__(self, reason: Reason, detail: str = "", *, record_index: int | None = None) -> None:
        self.reason = Reason(reason)
        self.detail = detail
        self.record_index = record_index
        super().__init__(f"{self.reason.value}: {detail}" if detail else self.reason.value)
