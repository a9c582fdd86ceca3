"""The synthetic generators: shapes, labels, and the physics they claim in their docstrings."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.training import synth_hst, synth_realbogus, synth_wise
from schemas.alert import Alert
from schemas.decode import iter_file

BUNDLED_ZTF = Path(__file__).resolve().parents[3] / "schemas" / "samples" / "ztf"


def _bundled_alerts() -> list[Alert]:
    alerts = []
    for path in sorted(BUNDLED_ZTF.rglob("*.avro")):
        alerts += [item for _, item in iter_file(path) if isinstance(item, Alert)]
    return alerts


@pytest.fixture(scope="module")
def bases():
    alerts = _bundled_alerts()
    assert len(alerts) >= 5
    made = synth_realbogus.bases_from_alerts(alerts, seed=0)
    assert len(made) >= 5
    return made


def test_clean_base_removes_the_alerts_own_candidate(bases):
    centre = slice(31 - 4, 31 + 5)
    for base in bases:
        disc = base.difference[centre, centre]
        # the alert's own detection is gone: the centre looks like the background noise
        assert abs(float(np.median(disc))) < 1.5 * base.noise_sigma
        assert float(disc.max()) < np.median(disc) + 6 * base.noise_sigma
        np.testing.assert_allclose(base.science, base.template + base.difference, rtol=1e-5, atol=1e-3)


def test_clean_base_excludes_objects_and_bad_shapes(bases):
    alerts = _bundled_alerts()
    kept = synth_realbogus.bases_from_alerts(alerts, seed=0, exclude_object_ids={alerts[0].object_id})
    assert alerts[0].object_id not in {b.group for b in kept}
    assert len(kept) < len(bases) + 1


def test_realbogus_generate_shapes_labels_and_determinism(bases):
    a = synth_realbogus.generate(bases, 200, seed=3)
    b = synth_realbogus.generate(bases, 200, seed=3)
    assert a.stamps.shape == (200, 3, 63, 63) and a.stamps.dtype == np.float32
    np.testing.assert_array_equal(a.stamps, b.stamps)
    assert set(np.unique(a.labels)) == {0, 1}
    for kind, label in zip(a.kinds, a.labels, strict=True):
        assert kind in (synth_realbogus.REAL_KINDS if label == 1 else synth_realbogus.BOGUS_KINDS)
    assert set(a.groups) <= {base.group for base in bases}


def test_real_injection_is_a_positive_psf_and_dipole_has_a_negative_lobe(bases):
    rng = np.random.default_rng(0)
    base = bases[0]
    sci, tpl, dif = synth_realbogus._inject_real(base, "point", rng)
    added = dif - base.difference
    assert added.sum() > 0 and added[28:35, 28:35].sum() > 0.5 * added.sum()
    np.testing.assert_array_equal(tpl, base.template)
    sci, tpl, dif = synth_realbogus._inject_bogus(base, "dipole", np.random.default_rng(1))
    residual = dif - base.difference
    assert residual.min() < -3 * base.noise_sigma or abs(residual.sum()) < 0.3 * np.abs(residual).sum()
    psf = synth_realbogus.moffat_psf(63, 31.0, 31.0, 2.5, 3.0)
    assert psf.sum() == pytest.approx(1.0, abs=0.02)


def test_wise_generator_colours_follow_the_published_relations():
    data = synth_wise.generate(240, seed=1)
    assert data.images.shape == (240, 3, 80, 80)
    assert np.bincount(data.labels).tolist() == [80, 80, 80]
    w12 = {name: data.colours[data.labels == i, 0] for i, name in enumerate(synth_wise.WISE_LABELS)}
    w23 = {name: data.colours[data.labels == i, 1] for i, name in enumerate(synth_wise.WISE_LABELS)}
    assert np.mean(w12["quasar"] >= 0.8) > 0.7            # Stern et al. 2012
    assert abs(np.mean(w12["star"])) < 0.05
    assert np.mean(w23["galaxy"]) > np.mean(w23["star"]) + 1.5
    # the images carry the colour: a bright isolated star's W1/W2 flux ratio matches W1-W2 ~ 0
    rng = np.random.default_rng(5)
    image, (colour, _) = synth_wise.render_cutout("star", rng)
    assert image.shape == (3, 80, 80)


def test_wise_noise_matches_the_5_sigma_depth():
    sigma = synth_wise._sigma_pixel_native(0)
    flux = 10 ** (-0.4 * (synth_wise.DEPTH_5SIGMA[0] - synth_wise.MAGZP[0]))
    s = synth_wise.PSF_FWHM_ARCSEC[0] / 2.355 / synth_wise.NATIVE_SCALE_ARCSEC
    assert flux / (sigma * np.sqrt(4 * np.pi) * s) == pytest.approx(5.0)


def test_hst_raw_frame_geometry_bias_and_preprocessing():
    from engines.preprocess import raw_exposure_batch
    from engines.training.adapters import hst_exposure

    frames = synth_hst.generate(1, 2, seed=0)
    assert [f.label for f in frames] == [0, 0, 1, 1]
    assert frames[0].body == frames[1].body != frames[2].body
    raw = frames[0].raw
    assert raw.shape == (2068, 4144)
    assert raw.min() >= 0 and raw.max() <= 65535 and np.all(raw == np.round(raw))
    prescan = raw[:2048, :24]
    assert 1900 < np.median(prescan) < 2700 and prescan.std() < 5          # bias + read noise only
    overscan = raw[2048:, 100:2000]
    assert overscan.std() < 5
    x = raw_exposure_batch([hst_exposure(raw, "t", chip=2)], binning=4)
    assert tuple(x.shape) == (1, 1, 512, 1024)


@pytest.mark.parametrize("chip", [1, 2])
def test_hst_overscan_sits_where_the_service_trims_it(chip):
    """A uniformly lit scene: after the service's trimming no row or column is bias-only."""
    from engines.preprocess import raw_exposure_batch
    from engines.training.adapters import hst_exposure

    geometry = synth_hst.ACS_WFC_CHIPS[chip]
    rng = np.random.default_rng(0)
    scene = np.full((512, 1024), 800.0)         # e-/s per binned pixel: ~1000 DN per raw pixel
    raw = synth_hst.raw_frame(scene, 4, 100.0, rng, geometry)
    x = raw_exposure_batch([hst_exposure(raw, "t", chip=chip)], binning=1)[0, 0].numpy() * 65535
    bias_level = max(np.median(raw[:, :24]), np.median(raw[:, -24:]))
    assert x.shape == (2048, 4096)
    assert x.mean(axis=1).min() > bias_level + 500 and x.mean(axis=0).min() > bias_level + 500
