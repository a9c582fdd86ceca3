"""ZTF's masked-pixel sentinel (-3.4e38) and infinities in a real cutout: decode keeps them as sent;
our own stretches read them as missing (finite inputs, the stamp's scale intact); the imported ZTF
models keep ZTF's handling so braai stays `drb`."""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import fastavro
import numpy as np
import pytest
import torch
from astropy.io import fits

from schemas.decode import decode_message

SAMPLE = sorted((Path(__file__).resolve().parents[2] / "schemas" / "samples" / "ztf" / "alerce").glob("*.avro"))[0]
SENTINEL = np.float32(-3.4e38)
HOLES = ((30, 30), (10, 12), (50, 5))


def _with_sentinels(packet: bytes) -> bytes:
    """The same real packet with three masked pixels in each cutout: ZTF's sentinel, +inf, -inf."""
    reader = fastavro.reader(io.BytesIO(packet))
    schema, records = reader.writer_schema, list(reader)
    for record in records:
        for field in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            with fits.open(io.BytesIO(gzip.decompress(record[field]["stampData"]))) as hdus:
                data = np.array(hdus[0].data, dtype=np.float32)
                header = hdus[0].header.copy()
            for (y, x), value in zip(HOLES, (SENTINEL, np.inf, -np.inf), strict=True):
                data[y, x] = value
            out = io.BytesIO()
            fits.PrimaryHDU(data, header=header).writeto(out)
            record[field]["stampData"] = gzip.compress(out.getvalue())
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, records)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clean_and_masked():
    packet = SAMPLE.read_bytes()
    (clean,) = decode_message(packet)
    (masked,) = decode_message(_with_sentinels(packet))
    return clean, masked


def test_decode_keeps_the_pixels_as_sent(clean_and_masked):
    clean, masked = clean_and_masked
    for stamp, before in ((masked.science, clean.science), (masked.template, clean.template),
                          (masked.difference, clean.difference)):
        for (y, x), value in zip(HOLES, (SENTINEL, np.inf, -np.inf), strict=True):
            assert stamp.data[y, x] == value
        keep = np.ones(stamp.shape, bool)
        for y, x in HOLES:
            keep[y, x] = False
        assert np.array_equal(stamp.data[keep], before.data[keep], equal_nan=True)


def test_min_max_and_shared_stretches_read_sentinels_as_missing():
    from engines.preprocess import fill_and_normalise, fill_and_stretch_shared

    rng = np.random.default_rng(0)
    clean = torch.from_numpy(rng.normal(100.0, 5.0, (1, 3, 63, 63)).astype(np.float32))
    holed = clean.clone()
    holed[0, :, 30, 30] = float(SENTINEL)
    holed[0, :, 10, 12] = float("inf")
    for stretch in (fill_and_normalise, fill_and_stretch_shared):
        a, b = stretch(clean), stretch(holed)
        assert torch.isfinite(b).all(), stretch.__name__
        keep = torch.ones_like(a, dtype=torch.bool)
        keep[0, :, 30, 30] = keep[0, :, 10, 12] = False
        assert torch.allclose(a[keep], b[keep], atol=1e-3), stretch.__name__  # the fill median moves a hair


@pytest.mark.parametrize("model", ["alertclass"])
def test_our_stamp_models_read_finite_stamps_at_the_clean_scale(clean_and_masked, model):
    from engines.registry import load_registry

    clean, masked = clean_and_masked
    runner = load_registry().load_runner(model, backend="torch")
    try:
        def stamps(alert):
            batch = runner.preprocess([alert])
            return (batch[0] if isinstance(batch, (tuple, list)) else batch)[0]

        a, b = stamps(clean), stamps(masked)
        assert torch.isfinite(b).all()
        # three filled pixels move a stamp's normalisation a little, never by orders of magnitude
        # (before the fix the sentinel squashed braai's row norm and made alertclass's stretch NaN)
        assert float(b.abs().max()) == pytest.approx(float(a.abs().max()), rel=0.5)
        assert float((a - b).abs().median()) < 0.05 * float(a.abs().max())
    finally:
        runner.close()
