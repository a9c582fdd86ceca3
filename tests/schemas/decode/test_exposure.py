"""Exposure writer/decoder round trips: HST ACS/WFC and WFC3/UVIS raw frames, WISE cutouts."""
from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
from astropy.io import fits

from schemas.alert import Exposure, InputKind
from schemas.decode import EXPOSURE_SCHEMA_ID, DecodeError, Reason, decode_message, pack_exposure
from schemas.decode.exposure import exposure_schema_id
from schemas.decode.limits import DecodeSettings

rng = np.random.default_rng(3)


def _raw_ccd_frame(instrument: str, detector: str, shape: tuple[int, int]) -> bytes:
    """An HST-style raw file: primary header + (SCI, ERR, DQ) x 2 chips, SCI as uint16 via BZERO."""
    primary = fits.PrimaryHDU()
    primary.header.update(INSTRUME=instrument, DETECTOR=detector, EXPTIME=507.0, ROOTNAME="j8xi01x1q")
    hdus = [primary]
    for chip in (1, 2):
        sci = fits.ImageHDU(rng.integers(0, 65535, size=shape, dtype=np.uint16), name="SCI", ver=chip)
        err = fits.ImageHDU(rng.random(shape, dtype=np.float32), name="ERR", ver=chip)
        dq = fits.ImageHDU(rng.integers(0, 16, size=shape, dtype=np.int16), name="DQ", ver=chip)
        hdus += [sci, err, dq]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _wise_cutouts() -> bytes:
    hdus = [fits.PrimaryHDU()] + [
        fits.ImageHDU(rng.normal(size=(64, 64)).astype(np.float32), name=band) for band in ("W1", "W2", "W3")
    ]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _expected_images(fits_bytes: bytes, by_band: bool) -> dict[str, np.ndarray]:
    with fits.open(io.BytesIO(fits_bytes)) as hdul:
        return {(h.name if by_band else f"{h.name},{h.ver}"): np.asarray(h.data).astype(np.float32)
                for h in hdul if h.data is not None}


@pytest.mark.parametrize("instrument, detector, compress", [
    ("ACS/WFC", "WFC", False), ("ACS/WFC", "WFC", True), ("WFC3/UVIS", "UVIS", True),
])
def test_raw_frame_round_trip(instrument, detector, compress):
    fits_bytes = _raw_ccd_frame(instrument.split("/")[0], detector, (48, 80))
    value = pack_exposure(fits_bytes, exposure_id="j8xi01x1q", instrument=instrument, filter="F606W",
                          exposure_time_s=507.0, mjd=52345.25, kind=InputKind.RAW_EXPOSURE, compress=compress)
    assert value[0] == 0 and struct.unpack(">i", value[1:5])[0] == EXPOSURE_SCHEMA_ID == exposure_schema_id(1, 0) == 10100
    (exp,) = decode_message(value)
    assert isinstance(exp, Exposure)
    assert (exp.exposure_id, exp.instrument, exp.filter, exp.exposure_time_s, exp.mjd) == (
        "j8xi01x1q", instrument, "F606W", 507.0, 52345.25)
    assert exp.kind is InputKind.RAW_EXPOSURE and exp.object_id == "" and exp.ra is None
    expected = _expected_images(fits_bytes, by_band=False)
    assert sorted(exp.images) == sorted(expected) == ["DQ,1", "DQ,2", "ERR,1", "ERR,2", "SCI,1", "SCI,2"]
    for name, data in expected.items():
        assert exp.images[name].dtype == np.float32
        assert exp.images[name].tobytes() == data.tobytes()
    assert exp.headers["PRIMARY"]["ROOTNAME"] == "j8xi01x1q"
    assert exp.headers["SCI,2"]["EXTVER"] == 2


def test_multiband_cutout_round_trip():
    fits_bytes = _wise_cutouts()
    value = pack_exposure(gzip.compress(fits_bytes), exposure_id="wise-123", instrument="WISE", filter="W1+W2+W3",
                          exposure_time_s=7.7, mjd=55400.0, kind="multiband_cutout", object_id="J1234+5678",
                          ra=188.5, dec=56.9)
    (exp,) = decode_message(value)
    assert exp.kind is InputKind.MULTIBAND_CUTOUT
    assert (exp.object_id, exp.ra, exp.dec) == ("J1234+5678", 188.5, 56.9)
    expected = _expected_images(fits_bytes, by_band=True)
    assert list(exp.images) == ["W1", "W2", "W3"]
    for band in expected:
        assert exp.images[band].tobytes() == expected[band].tobytes()


def test_exposure_bad_inputs():
    fits_bytes = _wise_cutouts()
    with pytest.raises(ValueError):
        pack_exposure(fits_bytes, exposure_id="x", instrument="WISE", filter="W1", exposure_time_s=1, mjd=1, kind="difference_alert")
    bomb = gzip.compress(b"\x00" * (17 * 1024 * 1024))
    value = pack_exposure(bomb, exposure_id="x", instrument="WISE", filter="W1", exposure_time_s=1, mjd=1, kind="multiband_cutout")
    with pytest.raises(DecodeError) as info:
        decode_message(value, DecodeSettings(max_exposure_fits_bytes=16 * 1024 * 1024))
    assert info.value.reason is Reason.GZIP_BOMB
    value = pack_exposure(b"not a fits file at all", exposure_id="x", instrument="WISE", filter="W1",
                          exposure_time_s=1, mjd=1, kind="multiband_cutout")
    with pytest.raises(DecodeError) as info:
        decode_message(value)
    assert info.value.reason is Reason.NOT_FITS
    unknown = b"\x00" + struct.pack(">i", 10199) + value[5:]
    with pytest.raises(DecodeError) as info:
        decode_message(unknown)
    assert info.value.reason is Reason.UNKNOWN_SCHEMA_ID


def test_full_size_raw_frame_passes_the_cutout_cap_but_an_exposure_bomb_does_not():
    """A real-size ACS/WFC raw frame (2 x SCI 2068 x 4144 uint16, ~34 MB of FITS) inflates past
    the 16 MB cutout cap; exposures have their own cap, so it decodes, and a bigger bomb is refused."""
    primary = fits.PrimaryHDU()
    hdus = [primary] + [fits.ImageHDU(np.full((2068, 4144), 2100 + chip, np.uint16), name="SCI", ver=chip) for chip in (1, 2)]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    assert buf.tell() > DecodeSettings().max_inflated_bytes
    value = pack_exposure(buf.getvalue(), exposure_id="jfull", instrument="ACS/WFC", filter="F606W",
                          exposure_time_s=500.0, mjd=60000.0, kind=InputKind.RAW_EXPOSURE, compress=True)
    assert len(value) < DecodeSettings().max_message_bytes        # constant frames compress well
    (exp,) = decode_message(value)
    assert exp.images["SCI,2"].shape == (2068, 4144) and float(exp.images["SCI,2"][0, 0]) == 2102.0
    tight = DecodeSettings(max_exposure_fits_bytes=buf.tell() - 1)
    with pytest.raises(DecodeError) as info:
        decode_message(value, tight)
    assert info.value.reason is Reason.GZIP_BOMB
