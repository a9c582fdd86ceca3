"""The fast FITS reader agrees bit for bit with astropy.io.fits, on every real cutout and on
every BITPIX / BSCALE / BZERO / BLANK case, and falls back to astropy for the rest."""
from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
import pytest
from astropy.io import fits

from schemas.decode.errors import DecodeError, Reason
from schemas.decode.fits import _astropy_read, _fast_read, inflate, read_fits
from tests.schemas.decode.packets import SAMPLES, cutout_bytes, packet_files, raw_records

CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


def _astropy_hdus(raw: bytes) -> list[tuple[np.ndarray | None, dict]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(raw)) as hdul:
            out = []
            for h in hdul:
                header = dict(h.header)  # before .data: astropy rewrites BITPIX/BSCALE when it scales
                out.append((None if h.data is None else np.array(h.data), header))
            return out


def _assert_same(raw: bytes) -> None:
    fast = _fast_read(raw)  # raises if the fast path does not take it: the common case must
    expected = _astropy_hdus(raw)
    assert len(fast) == len(expected)
    for ours, (data, header) in zip(fast, expected):
        assert (ours.data is None) == (data is None)
        if data is not None:
            assert ours.data.dtype == data.dtype
            assert ours.data.shape == data.shape
            assert ours.data.tobytes() == data.tobytes()
        for key, value in header.items():
            if key in ("COMMENT", "HISTORY", ""):
                continue
            assert ours.header[key] == value, key


def _real_cutouts(root):
    for path in packet_files(root):
        for record in raw_records(path):
            for field in CUTOUTS:
                raw = cutout_bytes(record, field)
                if raw[:3] != b"\xff\xd8\xff":
                    yield path, field, raw


def test_every_shared_cutout_bit_for_bit(shared_data):
    count = 0
    for _path, _field, raw in _real_cutouts(shared_data):
        _assert_same(raw)
        count += 1
    assert count == 197 * 3


def test_every_bundled_cutout_bit_for_bit():
    count = sum(1 for _ in map(_assert_same, (raw for _, _, raw in _real_cutouts(SAMPLES))))
    assert count == 84 * 3


def _fits_bytes(data: np.ndarray, **cards) -> bytes:
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    buf = io.BytesIO()
    fits.HDUList([hdu]).writeto(buf)
    return buf.getvalue()


def _raw_fits(bitpix: int, raw: np.ndarray, **cards) -> bytes:
    """A FITS file written card by card, so BSCALE/BZERO/BLANK are exactly as given."""
    lines = [f"{'SIMPLE':<8}= {'T':>20}", f"{'BITPIX':<8}= {bitpix:>20}", f"{'NAXIS':<8}= {2:>20}",
             f"{'NAXIS1':<8}= {raw.shape[1]:>20}", f"{'NAXIS2':<8}= {raw.shape[0]:>20}"]
    lines += [f"{k:<8}= {v!s:>20}" for k, v in cards.items()]
    lines.append("END")
    header = "".join(line.ljust(80) for line in lines).encode()
    header += b" " * (-len(header) % 2880)
    body = raw.astype(raw.dtype.newbyteorder(">")).tobytes()
    return header + body + b"\x00" * (-len(body) % 2880)


rng = np.random.default_rng(7)


@pytest.mark.parametrize("bitpix, dtype, cards", [
    (-32, np.float32, {}),
    (-64, np.float64, {}),
    (-32, np.float32, {"BSCALE": 2.5, "BZERO": -1.25}),
    (-64, np.float64, {"BSCALE": 0.1}),
    (16, np.int16, {}),
    (16, np.int16, {"BSCALE": 0.01, "BZERO": 3.0}),
    (16, np.int16, {"BZERO": 32768}),            # pseudo-unsigned -> uint16
    (16, np.int16, {"BZERO": 100, "BLANK": -5}),
    (32, np.int32, {}),
    (32, np.int32, {"BSCALE": 1.5, "BZERO": 7}),  # -> float64
    (32, np.int32, {"BZERO": 2147483648}),        # -> uint32
    (64, np.int64, {"BZERO": 9223372036854775808}),
    (8, np.uint8, {}),
    (8, np.uint8, {"BSCALE": 0.5, "BZERO": 10}),
])
def test_bitpix_and_scaling_match_astropy(bitpix, dtype, cards):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        raw = rng.integers(max(info.min, -30000), min(info.max, 30000), size=(7, 9), endpoint=True).astype(dtype)
        if "BLANK" in cards:
            raw[2, 3] = cards["BLANK"]
    else:
        raw = rng.normal(size=(7, 9)).astype(dtype)
        raw[0, 0] = np.nan
    _assert_same(_raw_fits(bitpix, raw, **cards))


def test_astropy_written_files_match():
    _assert_same(_fits_bytes(rng.normal(size=(63, 53)).astype(np.float32), BUNIT="DN", LONGSTR="x" * 100))
    ext = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.arange(12, dtype=np.int16).reshape(3, 4), name="SCI", ver=2)])
    buf = io.BytesIO()
    ext.writeto(buf)
    hdus = read_fits(buf.getvalue())
    assert hdus[1].name == "SCI" and hdus[1].ver == 2
    _assert_same(buf.getvalue())


def test_tables_fall_back_to_astropy():
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.arange(3.0))])
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(np.ones((4, 4), np.float32)), table]).writeto(buf)
    hdus = read_fits(buf.getvalue())
    assert len(hdus) == 2 and hdus[1].data is None and hdus[0].data.shape == (4, 4)
    assert [h.name for h in hdus] == [h.name for h in _astropy_read(buf.getvalue())]


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b[:3000], Reason.BAD_FITS),                       # data cut short
    (lambda b: b"NOTFITS!" + b[8:], Reason.NOT_FITS),
    (lambda b: b.replace(b"BITPIX  =                  -32", b"BITPIX  =                   12"), Reason.UNSUPPORTED_BITPIX),
    (lambda b: b[:80 * 3] + b" " * 2000, Reason.BAD_FITS),      # no END card
])
def test_broken_fits(mutate, reason):
    good = _fits_bytes(np.ones((30, 30), np.float32))
    with pytest.raises(DecodeError) as info:
        read_fits(mutate(good))
    assert info.value.reason is reason


def test_inflate_caps_output():
    payload = gzip.compress(b"\x00" * (1 << 20))
    assert len(inflate(payload, 1 << 20)) == 1 << 20
    with pytest.raises(DecodeError) as info:
        inflate(payload, (1 << 20) - 1)
    assert info.value.reason is Reason.GZIP_BOMB
    with pytest.raises(DecodeError) as info:
        inflate(payload[:-20], 1 << 21)
    assert info.value.reason is Reason.CORRUPT_GZIP
    with pytest.raises(DecodeError) as info:
        inflate(payload[:10] + b"\xff" * 40, 1 << 21)
    assert info.value.reason is Reason.CORRUPT_GZIP
