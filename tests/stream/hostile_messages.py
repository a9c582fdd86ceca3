"""Crafted hostile Kafka message values, built from real packets, for the service-side tests.

Each builder returns the bytes a hostile (or careless) producer could put on an alert topic.
They reproduce what a review of the decoders found: an Avro container whose block claims 2**62
zero-byte records (decoding loops forever), a tile-compressed FITS cutout that inflates to a
16000 x 16000 image, a ZTF alert whose ``candid`` is a string, and bytes that are no format at all.

``tests/hostile/corpus.py`` (``build_corpus``) is the full corpus; these are the few cases the
service tests need, built here so they do not depend on it.
"""
from __future__ import annotations

import copy
import gzip
import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from schemas.decode.avro import encode_long

REPO = Path(__file__).resolve().parents[2]
ZTF_SAMPLES = REPO / "schemas" / "samples" / "ztf"

__all__ = [
    "endless_container",
    "deflate_boolean_container",
    "fits_tile_bomb",
    "ztf_alert_with_cutout",
    "ztf_alert_with_string_candid",
    "real_ztf_packets",
    "ztf_alert_with_candidate_candid",
    "ztf_alert_with_object_id",
    "wise_cutout",
    "GARBAGE",
    "naive_decode",
    "segfault_decode",
]

#: Not Avro, not Confluent wire: the first byte is neither ``O`` nor 0x00.
GARBAGE = b"\x7f" + bytes(range(256)) * 4


_zigzag = encode_long


def _avro_bytes(b: bytes) -> bytes:
    return _zigzag(len(b)) + b


def endless_container(schema: bytes = b'"null"', count: int = 2**62) -> bytes:
    """An 84-byte Avro container: writer schema ``"null"`` (zero bytes per record) and one block
    declaring ``count`` records in zero bytes. A reader that trusts the count loops forever."""
    sync = b"\x5a" * 16
    meta = (_zigzag(2) + _avro_bytes(b"avro.schema") + _avro_bytes(schema)
            + _avro_bytes(b"avro.codec") + _avro_bytes(b"null") + _zigzag(0))
    return b"Obj\x01" + meta + sync + _zigzag(count) + _zigzag(0) + sync


def deflate_boolean_container(blocks: int = 2, records_per_block: int = 40 * 1024 * 1024) -> bytes:
    """A ~80 KB container whose writer schema is ``"boolean"``: each deflate block inflates to
    ``records_per_block`` one-byte records (80 M Python objects for the default two blocks)."""
    import zlib

    sync = b"\x33" * 16
    meta = (_zigzag(2) + _avro_bytes(b"avro.schema") + _avro_bytes(b'"boolean"')
            + _avro_bytes(b"avro.codec") + _avro_bytes(b"deflate") + _zigzag(0))
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\x00" * (1 << 20)
    block = b"".join(packer.compress(chunk) for _ in range(records_per_block >> 20)) + packer.flush()
    return b"Obj\x01" + meta + sync + (_zigzag(records_per_block) + _zigzag(len(block)) + block + sync) * blocks


@lru_cache(maxsize=2)
def fits_tile_bomb(side: int = 16000) -> bytes:
    """A ~250 KB tile-compressed (GZIP_1) FITS file whose one image inflates to ``side``**2 bytes
    (16000: 256 MB of uint8; astropy then needs twice that while decompressing)."""
    import numpy as np
    from astropy.io import fits

    hdu = fits.CompImageHDU(np.zeros((side, side), dtype=np.uint8), compression_type="GZIP_1", tile_shape=(side, side))
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


def real_ztf_packets(n: int | None = None) -> list[Path]:
    paths = sorted(p for p in ZTF_SAMPLES.rglob("*.avro") if p.is_file())
    return paths[:n] if n is not None else paths


def _first_record(path: Path) -> tuple[dict, dict]:
    reader = fastavro.reader(io.BytesIO(path.read_bytes()))
    return copy.deepcopy(reader.writer_schema), next(iter(reader))


def _container(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), [record], codec="deflate")
    return out.getvalue()


def ztf_alert_with_a_long_history_name(*, candid_offset: int = 1) -> bytes:
    """A good real ZTF alert whose first history item's file name is 300+ bytes: longer than the
    history skipper describes (schemas/decode/skip.py), so it decodes the slow, usual way."""
    schema, record = _first_record(real_ztf_packets(1)[0])
    record["prv_candidates"][0]["pdiffimfilename"] = "/ztf/archive/" + "x" * 300 + ".fits.fz"
    record["candid"] += candid_offset
    return _container(schema, record)


def ztf_alert_with_cutout(fits_bytes: bytes, *, base: Path | None = None, candid: int | None = None) -> bytes:
    """A real ZTF alert whose science cutout is replaced by ``fits_bytes`` (gzipped, as ZTF ships it)."""
    schema, record = _first_record(base or real_ztf_packets(1)[0])
    record["cutoutScience"] = dict(record["cutoutScience"], stampData=gzip.compress(fits_bytes, compresslevel=1))
    if candid is not None:
        record["candid"] = candid
        record["candidate"]["candid"] = candid
    return _container(schema, record)


def ztf_alert_with_string_candid(*, base: Path | None = None) -> bytes:
    """A real ZTF alert re-written with ``candid`` declared and set as a string."""
    schema, record = _first_record(base or real_ztf_packets(1)[0])
    for f in schema["fields"]:
        if f["name"] == "candid":
            f["type"] = "string"
    record["candid"] = "not-a-number-" + str(record["candid"])
    return _container(schema, record)


# ---------------------------------------------------------------- decoders without the guards
# Real code on real bytes for the watchdog's unit tests: what a decoder with a bug does. They run
# in the pool's worker processes (module-level, so they pickle by name).

def naive_decode(values: Sequence[bytes | None], settings: Any, registry_url: str = "") -> tuple[list[Any], float]:
    """Decode trusting every declared size: fastavro reads all records of a container, astropy
    inflates a FITS file. The endless container loops; the tile bomb allocates gigabytes."""
    from astropy.io import fits

    from stream.envelope import DecodeOutcome

    out = []
    for value in values:
        value = value or b""
        if value[:4] == b"Obj\x01":
            n = sum(1 for _ in fastavro.reader(io.BytesIO(value)))
            out.append(DecodeOutcome(reason="counted", detail=str(n)))
        elif value[:6] == b"SIMPLE":
            with fits.open(io.BytesIO(value)) as hdus:
                total = sum(int(h.data.nbytes) for h in hdus if h.data is not None)
            out.append(DecodeOutcome(reason="counted", detail=str(total)))
        else:
            out.append(DecodeOutcome(reason="unknown_format", detail=f"{len(value)} bytes"))
    return out, 0.0


def segfault_decode(values: Sequence[bytes | None], settings: Any, registry_url: str = "") -> tuple[list[Any], float]:
    """A decoder with a native crash: dereferences NULL on a value ``b"crash"``."""
    import ctypes

    from stream.envelope import DecodeOutcome

    out = []
    for value in values:
        if value == b"crash":
            ctypes.string_at(0)
        out.append(DecodeOutcome(reason="counted", detail=str(len(value or b""))))
    return out, 0.0


def killed_once_decode(values: Sequence[bytes | None], settings: Any, registry_url: str = "") -> tuple[list[Any], float]:
    """Counts bytes; a value ``b"kill-once:PATH"`` gets its worker SIGKILLed the first time (PATH
    marks that it happened), as the node's OOM killer or an operator would, and decodes the second."""
    import os
    import signal
    from pathlib import Path

    from stream.envelope import DecodeOutcome

    out = []
    for value in values:
        if value and value.startswith(b"kill-once:"):
            mark = Path(value.split(b":", 1)[1].decode())
            if not mark.exists():
                mark.write_text("killed")
                os.kill(os.getpid(), signal.SIGKILL)
        out.append(DecodeOutcome(reason="counted", detail=str(len(value or b""))))
    return out, 0.0


# ---------------------------------------------------------------- inputs that decode (issue #23)
# Valid-looking messages whose trouble comes after decode: in the projection, the record codec,
# the producer's size limit or preprocessing.

def ztf_alert_with_candidate_candid(value: float, *, base: Path | None = None) -> bytes:
    """A real ZTF alert with ``candidate.candid`` declared ``double`` and set to ``value`` (``inf``:
    the projection's ``int(inf)``; ``1e30``: a long the record cannot encode)."""
    schema, record = _first_record(base or real_ztf_packets(1)[0])
    candidate = next(f for f in schema["fields"] if f["name"] == "candidate")
    for f in candidate["type"]["fields"]:
        if f["name"] == "candid":
            f["type"] = "double"
    record["candidate"]["candid"] = float(value)
    return _container(schema, record)


def ztf_alert_with_object_id(object_id: str, *, base: Path | None = None) -> bytes:
    """A real ZTF alert with ``objectId`` replaced (6 MB of one letter deflates to a few kB)."""
    schema, record = _first_record(base or real_ztf_packets(1)[0])
    record["objectId"] = object_id
    return _container(schema, record)


def wise_cutout(bands: Sequence[str] = ("W1", "W2", "W3"), *, exposure_id: str = "wise-bands", side: int = 32) -> bytes:
    """A WISE multi-band cutout in our exposure schema, carrying only ``bands``."""
    import numpy as np
    from astropy.io import fits

    from schemas.decode import pack_exposure

    rng = np.random.default_rng(len(bands))
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(rng.normal(100.0, 5.0, (side, side)).astype(np.float32), name=b) for b in bands]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return pack_exposure(buf.getvalue(), exposure_id=exposure_id, instrument="WISE", filter=",".join(bands),
                         exposure_time_s=7.7, mjd=55300.0, kind="multiband_cutout", object_id="J0001", ra=150.0, dec=2.0,
                         compress=True)
