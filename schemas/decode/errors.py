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


class DecodeError(ValueError):
    """An input that cannot become an alert. ``reason`` is a :class:`Reason`; ``detail`` says more."""

    def __init__(self, reason: Reason, detail: str = "", *, record_index: int | None = None) -> None:
        self.reason = Reason(reason)
        self.detail = detail
        self.record_index = record_index
        super().__init__(f"{self.reason.value}: {detail}" if detail else self.reason.value)
