"""The night the benchmark replays, built once in memory and reused by every stage.

Alerts: the bundled real packets (``schemas/samples``: ZTF and Rubin), or those of one or more
``source`` folders or files (``surveys`` keeps one survey's), multiplied with fresh ids by the
replay's own rule (:func:`stream.replay.rewrite.multiply`, which encodes each original's unchanged
fields once) until there are at least ``n_alerts``. Copies are interleaved (copy 1 of every
packet, then copy 2, ...) so any prefix keeps the survey mix. Each message carries the headers
``replay`` would give it.

Raw exposures: synthetic HST ACS/WFC-like raw frames (two ``SCI`` extensions of 2068 x 4144
uint16 with pre-scan and overscan columns, sky + noise + a few sources), packed with
:func:`schemas.decode.pack_exposure`. Synthetic because the shared data holds no HST raw file
that we may bundle; the decoder and the model see the same shapes and dtype as a real one.
"""
from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from stream.replay.publish import OutgoingMessage, headers_for
from stream.replay.rewrite import multiply
from stream.replay.sources import SourceMessage, iter_source

__all__ = ["NightMessage", "Night", "build_night", "LSSTCAM_SOURCES", "cutout_bytes",
           "make_hst_raw_fits", "build_exposures", "SAMPLES", "ACS_RAW_SHAPE"]

log = structlog.get_logger(__name__)

SAMPLES = Path(__file__).resolve().parents[1] / "schemas" / "samples"
#: Real LSSTCam alert packets in the shared data (``../shared`` from the repository): Fink's
#: data-transfer dump of 2026-03-09 (107, with a year of history: ~300 kB each), Fink's 2025-12-31
#: sample (25), Fink's datasim v9_0 (25) and ALeRCE's one (each ~140 kB). Not the HSC 2016
#: packets of ``data/rubin/alerce-kafka`` or the simulated ``fink/v7_4``.
LSSTCAM_SOURCES: tuple[Path, ...] = tuple(
    Path(__file__).resolve().parents[1].parent / "shared" / p
    for p in ("rubin_pool/fink-tutorials", "rubin_pool/fink-science", "data/rubin/fink/v9_0", "data/rubin/alerce"))
#: Rows x columns of one ACS/WFC raw SCI extension (2048 x 4096 plus 20 overscan rows, 2 x 24 pre-scan columns).
ACS_RAW_SHAPE: tuple[int, int] = (2068, 4144)


@dataclass(frozen=True, slots=True)
class NightMessage:
    """One alert message of the night: what goes on the topic, and its raw cutouts for the baseline."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    survey: str
    cutouts: tuple[bytes, ...]


@dataclass
class Night:
    """The alerts (and exposures) of one benchmark night, with how they were made."""

    alerts: list[NightMessage]
    exposures: list[bytes] = field(default_factory=list)
    copies: int = 1
    originals: int = 0
    build_seconds: float = 0.0
    exposure_note: str = ""

    @property
    def values(self) -> list[bytes]:
        return [m.value for m in self.alerts]

    def describe(self) -> dict[str, Any]:
        surveys: dict[str, int] = {}
        for m in self.alerts:
            surveys[m.survey] = surveys.get(m.survey, 0) + 1
        return {
            "alerts": len(self.alerts),
            "alert_bytes": sum(len(m.value) for m in self.alerts),
            "by_survey": surveys,
            "original_packets": self.originals,
            "copies_per_packet": self.copies,
            "exposures": len(self.exposures),
            "exposure_bytes": sum(len(v) for v in self.exposures),
            "exposure_note": self.exposure_note,
            "build_seconds": round(self.build_seconds, 2),
        }


def cutout_bytes(record: Mapping[str, Any]) -> tuple[bytes, ...]:
    """The cutout payloads of a ZTF (``{"stampData": ...}``) or Rubin (bytes) alert record."""
    out = []
    for name in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        value = record.get(name)
        if isinstance(value, Mapping):
            value = value.get("stampData")
        if value:
            out.append(bytes(value))
    return tuple(out)


def _originals(sources: Sequence[Path], surveys: Sequence[str] = ("ztf", "rubin")) -> list[SourceMessage]:
    messages = [m for source in sources for m in iter_source(source) if isinstance(m, SourceMessage) and m.survey in surveys]
    if not messages:
        raise ValueError(f"no {' or '.join(surveys)} alert found under {', '.join(map(str, sources))}")
    return messages


def _interleaved(originals: list[SourceMessage], n_alerts: int, copies: int) -> Iterator[tuple[int, int, SourceMessage, SourceMessage]]:
    copiers = [multiply(original, copies) for original in originals]  # lazy: a copy is encoded when taken
    index = 0
    for _ in range(copies):
        for original, it in zip(originals, copiers):
            if index >= n_alerts:
                return
            copy_index, message = next(it)
            yield index, copy_index, original, message
            index += 1


def build_night(n_alerts: int, *, source: Path | Sequence[Path] = SAMPLES, exposures: int = 0,
                surveys: Sequence[str] = ("ztf", "rubin")) -> Night:
    """At least ``n_alerts`` alerts (exactly ``n_alerts``: the last copy round is cut short)."""
    if n_alerts < 1:
        raise ValueError("n_alerts must be >= 1")
    t0 = time.perf_counter()
    originals = _originals([source] if isinstance(source, Path) else list(source), surveys)
    copies = math.ceil(n_alerts / len(originals))
    alerts = []
    for index, copy_index, original, message in _interleaved(originals, n_alerts, copies):
        out = OutgoingMessage(index, copy_index, message, original.alert_id)
        key = message.object_id.encode() if message.object_id is not None else None
        alerts.append(NightMessage(key, message.value, headers_for(out, copies), message.survey,
                                   cutout_bytes(original.record or {})))
    night = Night(alerts=alerts, copies=copies, originals=len(originals))
    if exposures > 0:
        night.exposures = build_exposures(exposures)
        night.exposure_note = (f"{exposures} synthetic ACS/WFC-like raw exposures (2 x SCI {ACS_RAW_SHAPE[0]}x{ACS_RAW_SHAPE[1]} uint16), "
                               "packed with schemas.decode.pack_exposure")
    night.build_seconds = time.perf_counter() - t0
    log.info("night built", **night.describe())
    return night


def make_hst_raw_fits(seed: int, shape: tuple[int, int] = ACS_RAW_SHAPE, n_sources: int = 40) -> bytes:
    """An ACS/WFC-like raw FITS file: empty primary HDU + two uint16 ``SCI`` extensions.

    Sky ~ 120 DN with Poisson-like noise, bias 2000 DN in the 24-column pre-scan on both sides
    and the 20-row virtual overscan, and ``n_sources`` Gaussian blobs. Stored as BITPIX 16 with
    BZERO 32768 (unsigned), as HST writes raw files.
    """
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "HST"
    primary.header["INSTRUME"] = "ACS"
    primary.header["DETECTOR"] = "WFC"
    primary.header["FILTER1"] = "F606W"
    primary.header["EXPTIME"] = 500.0
    primary.header["ROOTNAME"] = f"jsynth{seed:03d}"
    hdus = [primary]
    rows, cols = shape
    yy, xx = np.mgrid[0:41, 0:41]
    for chip in (1, 2):
        image = rng.normal(2120.0, 11.0, size=shape).astype(np.float32)
        image[:, :24] = 2000.0 + rng.normal(0, 4, size=(rows, 24))
        image[:, -24:] = 2000.0 + rng.normal(0, 4, size=(rows, 24))
        overscan = slice(0, 20) if chip == 1 else slice(rows - 20, rows)
        image[overscan, :] = 2000.0 + rng.normal(0, 4, size=(20, cols))
        for _ in range(n_sources):
            y, x = int(rng.integers(40, rows - 60)), int(rng.integers(60, cols - 80))
            sigma, peak = rng.uniform(1.2, 6.0), rng.uniform(200, 20000)
            image[y:y + 41, x:x + 41] += peak * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / (2 * sigma**2))
        data = np.clip(image, 0, 65535).astype(np.uint16)
        ext = fits.ImageHDU(data=data, name="SCI", ver=chip)
        ext.header["CCDCHIP"] = chip
        hdus.append(ext)
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def build_exposures(count: int) -> list[bytes]:
    """``count`` packed raw-exposure message values (gzip FITS, the way a producer would send them)."""
    from schemas.alert import InputKind
    from schemas.decode import pack_exposure

    values = []
    for i in range(count):
        fits_bytes = make_hst_raw_fits(seed=i)
        values.append(pack_exposure(fits_bytes, exposure_id=f"jsynth{i:03d}q_raw", instrument="ACS/WFC", filter="F606W",
                                    exposure_time_s=500.0, mjd=60000.0 + i / 100, kind=InputKind.RAW_EXPOSURE,
                                    object_id=f"synth-{i}", compress=True))
    return values
