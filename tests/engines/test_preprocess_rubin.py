"""Rubin triplet preprocessing (``rubin_triplet_69``) against a plain numpy reference, on real
Rubin packets (the bundled ones, ../shared/data/rubin and ../shared/rubin_pool where present)
and on edge cases: NaN pixels, blank and all-NaN cutouts, odd and oversized cutouts, mirrored
and misaligned WCS."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.preprocess import (
    APPLIES,
    PREPROCESSORS,
    PreprocessError,
    rubin_applies,
    rubin_cutout_centre,
    rubin_orientation,
    rubin_triplet_batch,
)
from schemas.alert import Alert, Stamp
from schemas.walk import walk_decoded

REPO = Path(__file__).resolve().parents[2]
RUBIN_ROOTS = (REPO / "schemas" / "samples" / "rubin" / "alerce", REPO / "schemas" / "samples" / "rubin" / "alerce-kafka",
               REPO.parent / "shared" / "data" / "rubin" / "fink" / "v9_0", REPO.parent / "shared" / "rubin_pool")


@pytest.fixture(scope="module")
def rubin_alerts() -> list[Alert]:
    roots = [r for r in RUBIN_ROOTS if r.is_dir()]
    alerts = [item for _entry, _index, item in walk_decoded(roots) if isinstance(item, Alert)]
    assert len(alerts) >= 6          # the bundled real packets at least
    return alerts


# --- the numpy reference: one alert at a time, written from the module docstring ---------

def _np_lower_median(values: np.ndarray) -> float:
    values = np.sort(values[np.isfinite(values)].astype(np.float64))
    return float(values[(len(values) - 1) // 2]) if len(values) else 0.0


def np_rubin_triplet(alert: Alert, size: int = 69, window: int | None = None) -> np.ndarray:
    length = min(size, window) if window else size
    planes = [np.asarray(s.data, dtype=np.float32) for s in (alert.science, alert.template, alert.difference)]
    h, w = planes[0].shape
    cy, cx = rubin_cutout_centre(h), rubin_cutout_centre(w)
    r0, r1 = max(0, cy - length // 2), min(h, cy - length // 2 + length)
    c0, c1 = max(0, cx - length // 2), min(w, cx - length // 2 + length)
    centred = []
    for plane in planes:
        cut = plane[r0:r1, c0:c1]
        median = np.float32(_np_lower_median(cut))
        centred.append(np.where(np.isfinite(cut), cut - median, np.float32(0)).astype(np.float32))
    diff, diff_finite = centred[2], np.isfinite(planes[2][r0:r1, c0:c1])
    noise = 1.4826 * _np_lower_median(np.where(diff_finite, np.abs(diff), np.nan))
    peak = max(float(np.abs(c).max()) for c in centred)
    scale = noise if noise > 0 else (peak if peak > 0 else 1.0)
    out = np.zeros((3, size, size), dtype=np.float32)
    top, left = size // 2 - (cy - r0), size // 2 - (cx - c0)
    for j, plane in enumerate(centred):
        out[j, top:top + (r1 - r0), left:left + (c1 - c0)] = np.arcsinh(plane / np.float32(scale))
    header = alert.science.header
    if "PC1_1" in header or "CD1_1" in header:
        key = "CD" if "CD1_1" in header else "PC"
        m = np.array([[header[f"{key}1_1"], header[f"{key}1_2"]], [header[f"{key}2_1"], header[f"{key}2_2"]]], float)
        if key == "PC":
            m = np.array([header.get("CDELT1", 1.0), header.get("CDELT2", 1.0)])[:, None] * m
        if np.linalg.det(m) > 0:
            out = out[:, :, ::-1]
    return out


def _with_planes(alert: Alert, science, template, difference, header_changes=None) -> Alert:
    def stamp(old: Stamp, data) -> Stamp:
        header = dict(old.header)
        header.update(header_changes or {})
        return dataclasses.replace(old, data=np.asarray(data, dtype=np.float32), header=header)

    return dataclasses.replace(alert, science=stamp(alert.science, science), template=stamp(alert.template, template),
                               difference=stamp(alert.difference, difference))


# --- tests -------------------------------------------------------------------------------

def test_rubin_triplet_matches_numpy_reference_on_real_packets(rubin_alerts) -> None:
    assert all(rubin_applies(a) for a in rubin_alerts)
    got = rubin_triplet_batch(rubin_alerts).numpy()
    want = np.stack([np_rubin_triplet(a) for a in rubin_alerts])
    assert got.shape == (len(rubin_alerts), 3, 69, 69)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    windowed = PREPROCESSORS["rubin_triplet_w30_69"](rubin_alerts, "cpu").numpy()
    np.testing.assert_allclose(windowed, np.stack([np_rubin_triplet(a, window=30) for a in rubin_alerts]), rtol=1e-4, atol=1e-4)
    assert not windowed[:, :, :19].any() and not windowed[:, :, 49:].any()   # 30 px around the centre only


def test_rubin_cutouts_are_centred_on_the_source(rubin_alerts) -> None:
    """The centring rule against each packet's own diaSource position (x - CUTMINX)."""
    checked = 0
    for alert in rubin_alerts:
        header, candidate = alert.science.header, alert.candidate
        if "CUTMINX" not in header or candidate.get("x") is None:
            continue
        h, w = alert.science.shape
        assert abs(float(candidate["x"]) - float(header["CUTMINX"]) - rubin_cutout_centre(w)) < 1.0
        assert abs(float(candidate["y"]) - float(header["CUTMINY"]) - rubin_cutout_centre(h)) < 1.0
        checked += 1
    assert checked >= 6


def test_rubin_triplet_edge_cases(rubin_alerts) -> None:
    base = rubin_alerts[0]
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 40, (31, 31)).astype(np.float32)
    holed = noise.copy()
    holed[:5, :] = np.nan
    nan = np.full((30, 30), np.nan, np.float32)
    zero = np.zeros((30, 30), np.float32)
    big = rng.normal(0, 40, (101, 101)).astype(np.float32)
    big[rubin_cutout_centre(101), rubin_cutout_centre(101)] = 5000.0
    cases = [
        _with_planes(base, holed, noise, holed),                         # NaN rows, odd size
        _with_planes(base, nan, nan, nan),                               # all missing
        _with_planes(base, zero, zero, zero),                            # blank
        _with_planes(base, noise[:30, :30], zero, nan),                  # blank template, missing difference
        _with_planes(base, big, big, big),                               # bigger than the frame
        _with_planes(base, noise[:30, :30] * 1e30, zero, zero),          # huge values stay finite
    ]
    got = rubin_triplet_batch(cases).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, np.stack([np_rubin_triplet(a) for a in cases]), rtol=1e-4, atol=1e-4)
    assert not got[1].any() and not got[2].any()                         # missing / blank -> zeros
    assert got[4, 2, 34, 34] == got[4, 2].max()                          # oversized: source at the centre
    assert got[0, 0, 34 - 16:34 - 16 + 5].max() == 0                     # NaN rows -> 0 (the background)


def test_rubin_mirrored_wcs_is_flipped_and_misaligned_is_refused(rubin_alerts) -> None:
    base = next(a for a in rubin_alerts if "PC1_1" in a.science.header)
    h = base.science.header
    assert np.linalg.det([[h["PC1_1"], h["PC1_2"]], [h["PC2_1"], h["PC2_2"]]]) < 0    # real packets: sky parity
    assert rubin_orientation(base) is False
    # the same pixels declared mirrored (east right of north): flipped about the frame's centre column
    mirrored = _with_planes(base, base.science.data, base.template.data, base.difference.data,
                            {"PC1_1": -h["PC1_1"], "PC2_1": -h["PC2_1"]})
    assert rubin_orientation(mirrored) is True
    plain, flipped = rubin_triplet_batch([base, mirrored]).numpy()
    np.testing.assert_array_equal(flipped, plain[:, :, ::-1])
    np.testing.assert_allclose(flipped, np_rubin_triplet(mirrored), atol=1e-4)
    turned = dataclasses.replace(base, template=dataclasses.replace(
        base.template, header={**base.template.header, "PC1_2": -h["PC1_2"], "PC2_1": -h["PC2_1"]}))
    assert not rubin_applies(turned)
    assert not APPLIES["rubin_triplet_69"](turned)
    with pytest.raises(PreprocessError):
        rubin_triplet_batch([turned])


def test_rubin_triplet_is_batch_independent(rubin_alerts) -> None:
    """An alert's row does not depend on which other alerts (of which shapes) share its batch."""
    whole = rubin_triplet_batch(rubin_alerts)
    for i in (0, len(rubin_alerts) // 2, len(rubin_alerts) - 1):
        assert torch.equal(rubin_triplet_batch([rubin_alerts[i]])[0], whole[i])
    assert rubin_triplet_batch([]).shape == (0, 3, 69, 69)
