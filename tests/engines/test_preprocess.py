"""Device preprocessing (torch) against a plain numpy reference, on real ZTF stamps.

No real raw HST frame or WISE cutout is in ../shared/data, so the raw-frame geometry is checked
on frames built with the instruments' layout (each overscan region filled with a marker value),
and the multi-band path on real ZTF stamp planes standing in for bands.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.preprocess import (
    PREPROCESSORS,
    PreprocessError,
    difference_alert_batch,
    difference_alert_batch_rownorm,
    fill_and_normalise,
    fill_and_stretch_shared,
    multiband_batch,
    raw_exposure_batch,
    raw_exposure_items,
)
from schemas.alert import Exposure, InputKind
from tests.engines.real_stamps import real_alerts

ATOL = 1e-5  # float32 arithmetic in a different order


# --- the numpy reference --------------------------------------------------------------------

def _np_start(n: int, frame: int, pos: float | None, det: int | None) -> int:
    """Where a stamp of ``n`` pixels starts: cut at the low edge -> pushed high, and vice versa."""
    if pos is not None and det is not None and n < frame:
        if pos - 1 < frame // 2:
            return frame - n
        if det - pos < frame // 2:
            return 0
    return (frame - n) // 2


def np_frame(data: np.ndarray, frame: int = 63, position=None, detector=None) -> np.ndarray:
    out = np.full((frame, frame), np.nan, dtype=np.float64)
    h, w = data.shape
    x, y = position if position is not None else (None, None)
    rows, cols = detector if detector is not None else (None, None)
    top, left = _np_start(h, frame, y, rows), _np_start(w, frame, x, cols)
    out[top:top + h, left:left + w] = data
    return out


def np_fill_normalise(plane: np.ndarray) -> np.ndarray:
    plane = plane.astype(np.float64)
    finite = np.abs(plane) < 3e38  # NaN, inf and ZTF's -3.4e38 sentinel are missing
    values = np.sort(plane[finite])
    median = values[(len(values) - 1) // 2] if len(values) else 0.0   # lower median
    filled = np.where(finite, plane, median)
    low, high = filled.min(), filled.max()
    return (filled - low) / (high - low) if high > low else np.zeros_like(filled)


def _np_lower_median(values: np.ndarray) -> float:
    values = np.sort(values.ravel())
    return float(values[(len(values) - 1) // 2]) if len(values) else float("nan")


def np_multiband_scale(planes: np.ndarray) -> float:
    """The shared divisor of one cutout (see :func:`np_multiband`)."""
    return float(_np_multiband(planes, 1)[1])


def np_multiband(planes: np.ndarray, size: int) -> np.ndarray:
    return _np_multiband(planes, size)[0]


def _np_multiband(planes: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """(C, H, W) band images -> (C, size, size): per-band median subtracted (NaN -> it), one
    shared scale (1.4826 MAD of band 0, else the cutout's max |pixel|, else 1), bilinear, asinh."""
    planes = planes.astype(np.float64)
    centred = np.zeros_like(planes)
    for band, plane in enumerate(planes):
        finite = np.abs(plane) < 3e38
        median = _np_lower_median(plane[finite]) if finite.any() else 0.0
        centred[band] = np.where(finite, plane - median, 0.0)
    finite0 = np.abs(planes[0]) < 3e38
    noise = 1.4826 * _np_lower_median(np.abs(centred[0][finite0])) if finite0.any() else 0.0
    peak = np.abs(centred).max()
    scale = noise if noise > 0 else (peak if peak > 0 else 1.0)
    return np.arcsinh(np.stack([np_bilinear(plane / scale, size) for plane in centred])), scale


def np_bilinear(plane: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize, half-pixel centres (align_corners=False), edges clamped."""
    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0
    y0, y1, fy = axis(plane.shape[0])
    x0, x1, fx = axis(plane.shape[1])
    top = plane[y0][:, x0] * (1 - fx) + plane[y0][:, x1] * fx
    bottom = plane[y1][:, x0] * (1 - fx) + plane[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def np_stamp(data: np.ndarray, size: int, position=None, detector=None) -> np.ndarray:
    return np_bilinear(np_fill_normalise(np_frame(np.asarray(data), 63, position, detector)), size)


# --- tests ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def alerts(real_data_roots: tuple[Path, ...]):
    found = real_alerts(real_data_roots)
    assert len(found) >= 16
    return found


def test_real_stamps_include_nans_and_with_shared_data_edge_stamps(alerts, real_data_roots) -> None:
    assert any(not np.isfinite(s.data).all() for a in alerts for s in (a.science, a.template, a.difference))
    if len(real_data_roots) > 1:   # the bundled packets hold no edge-cut stamp; ../shared/data does
        assert any(a.science.shape != (63, 63) for a in alerts)


def test_difference_alert_batch_matches_numpy_reference(alerts) -> None:
    batch = difference_alert_batch(alerts, size=69, device="cpu")
    assert batch.shape == (len(alerts), 3, 69, 69) and batch.dtype == torch.float32
    assert torch.isfinite(batch).all()
    for row, alert in zip(batch.numpy(), alerts):
        for channel, stamp in enumerate((alert.science, alert.template, alert.difference)):
            expected = np_stamp(stamp.data, 69, alert.position_px, alert.detector_shape)
            np.testing.assert_allclose(row[channel], expected, atol=ATOL, rtol=0)


def test_arcsec_grid_stamps_match_numpy_reference_on_ztf(alerts) -> None:
    """``difference_stamps_arcsec_63`` (alertclass): ZTF stamps are already on the 1.01" grid, so
    framing + fill + min-max as for real/bogus, no resize (full-frame stamps skip the framing)."""
    from engines.preprocess import difference_alert_batch_by_scale

    batch = difference_alert_batch_by_scale(alerts, 63, 1.01)
    assert batch.shape == (len(alerts), 3, 63, 63) and torch.isfinite(batch).all()
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
    ztf = [(row, a) for row, a in zip(batch.numpy(), alerts) if a.survey == "ztf"]
    assert len(ztf) == len(alerts)
    for row, alert in ztf:
        for channel, stamp in enumerate((alert.science, alert.template, alert.difference)):
            expected = np_fill_normalise(np_frame(stamp.data, 63, alert.position_px, alert.detector_shape))
            np.testing.assert_allclose(row[channel], expected, atol=ATOL, rtol=0)


def np_rownorm_stamp(data: np.ndarray, size: int) -> np.ndarray:
    """braai d6_m7's normalisation written out: NaN -> 0, centre-crop to 63, each row / its L2
    norm in float32 (zero rows kept; a row whose squares overflow float32 becomes zeros, as in
    braai's own code), bottom/right padding with 1e-9, then bilinear to ``size``."""
    plane = np.nan_to_num(np.asarray(data, dtype=np.float32))
    top, left = max((plane.shape[0] - 63) // 2, 0), max((plane.shape[1] - 63) // 2, 0)
    plane = plane[top:top + 63, left:left + 63]
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.sqrt((plane ** 2).sum(axis=1, keepdims=True, dtype=np.float32))
        plane = (plane / np.where(norms == 0, np.float32(1), norms)).astype(np.float64)
    plane = np.pad(plane, [(0, 63 - plane.shape[0]), (0, 63 - plane.shape[1])], constant_values=1e-9)
    return np_bilinear(plane, size)


def test_rownorm_stamps_are_braai_input_resampled(alerts) -> None:
    """``difference_stamps_rownorm_69`` (realbogus >= 2.1): braai d6_m7's own triplet, 63 -> 69."""
    batch = difference_alert_batch_rownorm(alerts, 69)
    assert batch.shape == (len(alerts), 3, 69, 69) and torch.isfinite(batch).all()
    assert torch.equal(PREPROCESSORS["difference_stamps_rownorm_69"](alerts, "cpu"), batch)
    for row, alert in zip(batch.numpy(), alerts):
        for channel, stamp in enumerate((alert.science, alert.template, alert.difference)):
            np.testing.assert_allclose(row[channel], np_rownorm_stamp(stamp.data, 69), atol=1e-5, rtol=0)


def test_padded_rownorm_stamps_are_braai_input_pixel_for_pixel(alerts) -> None:
    """``difference_stamps_rownorm_pad69`` (realbogus >= 2.2): braai d6_m7's 63 x 63 triplet,
    unresampled, centred in 69 x 69 zeros (3 px each side)."""
    batch = PREPROCESSORS["difference_stamps_rownorm_pad69"](alerts, "cpu").numpy()
    assert batch.shape == (len(alerts), 3, 69, 69)
    for row, alert in zip(batch, alerts):
        for channel, stamp in enumerate((alert.science, alert.template, alert.difference)):
            np.testing.assert_allclose(row[channel, 3:66, 3:66], np_rownorm_stamp(stamp.data, 63), atol=1e-6, rtol=0)
        border = np.ones((69, 69), bool)
        border[3:66, 3:66] = False
        assert not row[:, border].any()           # the frame is zeros: nothing resampled, nothing invented


def _stand_in_exposures(alerts, count: int = 12, gain: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> list[Exposure]:
    """Real ZTF stamp planes standing in for W1 / W2 / W3 (no real WISE cutout is available).

    Cutouts come in more than one size: where the alerts hold no edge-cut stamp (the bundled
    packets hold none), every third one is cut to 47 rows, as a detector edge cuts a stamp."""
    cut_some = all(a.science.shape == (63, 63) for a in alerts[:count])
    return [
        Exposure(exposure_id=str(a.alert_id), instrument="WISE", filter="W1W2W3", exposure_time_s=0.0, mjd=a.mjd,
                 kind=InputKind.MULTIBAND_CUTOUT,
                 images={band: np.asarray(stamp.data, dtype=np.float32)[:47 if cut_some and i % 3 == 1 else None] * np.float32(g)
                         for band, stamp, g in zip(("W1", "W2", "W3"), (a.science, a.template, a.difference), gain)})
        for i, a in enumerate(alerts[:count])
    ]


def test_iicnet_size_resampling_matches_reference(alerts) -> None:
    exposures = _stand_in_exposures(alerts)
    assert any(not np.isfinite(e.images[b]).all() for e in exposures for b in e.images)  # NaN path exercised
    assert any(e.images["W1"].shape != (63, 63) for e in exposures)                      # not all one shape
    batch = multiband_batch(exposures, size=80)
    assert batch.shape == (12, 3, 80, 80) and batch.dtype == torch.float32
    assert torch.isfinite(batch).all()
    for row, exposure in zip(batch.numpy(), exposures):
        planes = np.stack([np.asarray(exposure.images[b], dtype=np.float64) for b in ("W1", "W2", "W3")])
        expected = np_multiband(planes, 80)  # no frame: cutouts are resampled whole
        # float32 rounding of raw counts (up to ~1e4) is amplified by the division by a noise of
        # a few counts: allow a few float32 ulps of the largest raw value, in noise units.
        rounding = 8 * np.finfo(np.float32).eps * np.nanmax(np.abs(planes[np.isfinite(planes)])) / np_multiband_scale(planes)
        np.testing.assert_allclose(row, expected, atol=ATOL + rounding, rtol=0)


def test_multiband_keeps_band_ratios(alerts) -> None:
    """W2 = 2.5 x W1 (+ a different sky level) must come out 2.5 x brighter in linear flux;
    per-band min-max scaling (the old transform) made both bands identical."""
    base = [np.asarray(a.science.data, dtype=np.float32) for a in alerts[:6]]
    exposures = [Exposure(f"ratio-{i}", "WISE", "W1W2W3", 0.0, 0.0, InputKind.MULTIBAND_CUTOUT,
                          images={"W1": plane, "W2": np.float32(2.5) * plane + np.float32(40.0), "W3": plane})
                 for i, plane in enumerate(base)]
    batch = multiband_batch(exposures, size=80).double()
    w1, w2, w3 = torch.sinh(batch[:, 0]), torch.sinh(batch[:, 1]), torch.sinh(batch[:, 2])
    torch.testing.assert_close(w2, 2.5 * w1, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(w3, w1, atol=1e-5, rtol=1e-5)
    assert (batch[:, 1] - batch[:, 0]).abs().amax() > 0.5     # the colour is visible to the network


def test_multiband_scale_is_shared_and_set_by_w1(alerts) -> None:
    """Scaling W1 and W2 together changes nothing; scaling W2 alone changes only W2.

    Stamps holding pixels near the float32 limit (some real packets carry them) are left out:
    times 3 they overflow to inf, which preprocessing rightly treats as missing."""
    def fits_times_3(a) -> bool:
        return all(np.nanmax(np.abs(np.where(np.isfinite(s.data), s.data, 0.0))) < np.finfo(np.float32).max / 4
                   for s in (a.science, a.template, a.difference))

    alerts = [a for a in alerts if fits_times_3(a)]
    plain = multiband_batch(_stand_in_exposures(alerts, 6), size=80)
    together = multiband_batch(_stand_in_exposures(alerts, 6, gain=(3.0, 3.0, 3.0)), size=80)
    w2_only = multiband_batch(_stand_in_exposures(alerts, 6, gain=(1.0, 3.0, 1.0)), size=80)
    torch.testing.assert_close(together, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w2_only[:, [0, 2]], plain[:, [0, 2]], atol=1e-6, rtol=0)
    assert not torch.allclose(w2_only[:, 1], plain[:, 1], atol=1e-2)


def test_fill_and_stretch_shared_edge_cases() -> None:
    nan = float("nan")
    # all-missing W1: noise falls back to the cutout's largest |pixel| (3 - median 1 = 2)
    x = torch.tensor([[[[nan, nan], [nan, nan]], [[2.0, 2.0], [2.0, float("inf")]], [[0.0, 1.0], [nan, 3.0]]]])
    out = fill_and_stretch_shared(x)
    assert torch.equal(out[0, 0], torch.zeros(2, 2))   # all missing -> 0
    assert torch.equal(out[0, 1], torch.zeros(2, 2))   # constant (inf -> median) -> 0
    torch.testing.assert_close(out[0, 2], torch.asinh(torch.tensor([[-0.5, 0.0], [0.0, 1.0]])))
    assert torch.equal(fill_and_stretch_shared(torch.full((1, 3, 4, 4), 7.0)), torch.zeros(1, 3, 4, 4))
    with pytest.raises(PreprocessError, match="reference band"):
        fill_and_stretch_shared(x, reference_band=3)


def test_multiband_missing_band_is_a_preprocess_error(alerts) -> None:
    exposure = Exposure("x", "WISE", "W1", 0.0, 0.0, InputKind.MULTIBAND_CUTOUT, images={"W1": alerts[0].science.data})
    with pytest.raises(PreprocessError, match="missing bands"):
        multiband_batch([exposure])


def test_fill_and_normalise_edge_cases() -> None:
    x = torch.tensor([[[[np.nan, np.nan], [np.nan, np.nan]], [[2.0, 2.0], [2.0, np.inf]], [[0.0, 1.0], [np.nan, 3.0]]]])
    out = fill_and_normalise(x)
    assert torch.equal(out[0, 0], torch.zeros(2, 2))  # all missing -> 0
    assert torch.equal(out[0, 1], torch.zeros(2, 2))  # constant -> 0
    torch.testing.assert_close(out[0, 2], torch.tensor([[0.0, 1 / 3], [1 / 3, 1.0]]))  # NaN -> lower median 1


def _raw_frame(instrument: str, chip: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A raw extension with overscan filled with 60000 DN and its 2048 x 4096 imaging area."""
    image = rng.integers(0, 5000, size=(2048, 4096)).astype(np.float32)
    if instrument == "ACS/WFC":
        raw = np.full((2068, 4144), 60000, dtype=np.float32)
        rows = slice(20, 2068) if chip == 1 else slice(0, 2048)
        raw[rows, 24:4120] = image
    else:
        raw = np.full((2070, 4206), 60000, dtype=np.float32)
        rows = slice(22, 2070) if chip == 1 else slice(0, 2048)
        raw[rows, 25:2073] = image[:, :2048]
        raw[rows, 2133:4181] = image[:, 2048:]
    return raw, image


@pytest.mark.parametrize("instrument", ["ACS/WFC", "WFC3/UVIS"])
def test_raw_exposure_trim_and_amplifier_merge(instrument: str) -> None:
    rng = np.random.default_rng(7)
    raw1, image1 = _raw_frame(instrument, 1, rng)
    raw2, image2 = _raw_frame(instrument, 2, rng)
    exposure = Exposure("e1", instrument, "F606W", 100.0, 60000.0, InputKind.RAW_EXPOSURE,
                        images={"SCI,1": raw2, "SCI,2": raw1})  # HST: [SCI,1] is chip 2
    batch = raw_exposure_batch([exposure])
    assert batch.shape == (2, 1, 2048, 4096)
    np.testing.assert_array_equal(batch[0, 0].numpy(), image1 / np.float32(65535))
    np.testing.assert_array_equal(batch[1, 0].numpy(), image2 / np.float32(65535))
    binned = raw_exposure_batch([exposure], binning=4)
    expected = (image1 / np.float32(65535)).reshape(512, 4, 1024, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(binned[0, 0].numpy(), expected, atol=1e-6)


def test_raw_exposure_items_keep_chips_in_one_row() -> None:
    rng = np.random.default_rng(3)
    raw1, image1 = _raw_frame("ACS/WFC", 1, rng)
    raw2, image2 = _raw_frame("ACS/WFC", 2, rng)
    both = Exposure("two", "ACS/WFC", "F814W", 1.0, 0.0, InputKind.RAW_EXPOSURE,
                    images={"SCI,1": raw2, "SCI,2": raw1}, headers={"SCI,1": {"CCDCHIP": 2}, "SCI,2": {"CCDCHIP": 1}})
    one = Exposure("one", "ACS/WFC", "F814W", 1.0, 0.0, InputKind.RAW_EXPOSURE, images={"SCI,1": raw2})
    items = raw_exposure_items([both, one], binning=8)
    assert items.shape == (2, 2, 256, 512)
    expected1 = (image1 / np.float32(65535)).reshape(256, 8, 512, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(items[0, 0].numpy(), expected1, atol=1e-6)
    torch.testing.assert_close(items[1, 0], items[1, 1])  # a single chip is repeated


def test_raw_exposure_wrong_geometry_is_refused() -> None:
    exposure = Exposure("e2", "ACS/WFC", "F606W", 1.0, 0.0, InputKind.RAW_EXPOSURE, images={"SCI,1": np.zeros((100, 100), np.float32)})
    with pytest.raises(PreprocessError, match="raw shape"):
        raw_exposure_batch([exposure])


@pytest.mark.gpu
def test_cuda_preprocessing_matches_cpu(alerts) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this host")
    cpu = difference_alert_batch(alerts, 69, "cpu")
    gpu = difference_alert_batch(alerts, 69, "cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


@pytest.mark.gpu
def test_cuda_multiband_matches_cpu(alerts) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this host")
    exposures = _stand_in_exposures(alerts)
    cpu = multiband_batch(exposures, 80, device="cpu")
    gpu = multiband_batch(exposures, 80, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


def test_edge_stamp_is_placed_away_from_the_detector_edge_it_was_cut_at():
    """A 41-row stamp of a candidate 10 px from the bottom edge keeps its rows at the top."""
    from engines.preprocess import frame_stamp
    from schemas.decode.stamps import ZTF_QUADRANT_SHAPE

    stamp = np.arange(41 * 63, dtype=np.float32).reshape(41, 63)
    framed = frame_stamp(stamp, 63, position_px=(2647.1, 10.4), detector_shape=ZTF_QUADRANT_SHAPE)
    assert np.isnan(framed[:22]).all() and np.array_equal(framed[22:], stamp)
    centred = frame_stamp(stamp, 63)
    assert np.isnan(centred[:11]).all() and np.array_equal(centred[11:52], stamp)
