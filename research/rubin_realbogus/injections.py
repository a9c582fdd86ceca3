"""Injections into real Rubin science / template pairs: labelled triplets no survey sends us.

No human-vetted Rubin alert is reachable here, and Rubin's own ``reliability`` is a model's
score (all >= 0.5 after 2026-02-25). Injections give both classes with labels we know,
on real Rubin sky, noise and PSFs.

**Base.** Each real alert gives a base with its own source removed: the difference is
replaced by a fresh noise draw ``n`` from the alert's variance plane (or its robust noise),
and the science becomes ``science - difference + n``, i.e. the PSF-matched template plus
science noise (Rubin's difference is science minus the matched template, so this is the
science image as it would be without the transient). The template is the real one.

**Consistency.** Every injection adds its signal ``S_sci`` to the science and ``S_tpl`` to the
template, and ``S_sci - S_tpl_matched`` to the difference: difference = science - matched
template holds exactly as on the base (the template's own copy of a star is the star seen
at the template's PSF; for a perfect subtraction that copy is matched away).

**PSF.** A circular Gaussian of the alert's own FWHM, measured on its PSF plane (``extra['psf']``
of the difference: twice the radius of the area above half maximum), 3.5 px (0.7" seeing)
where a packet has none. The template's PSF is a little narrower (coadd), 0.8..1.0 x.
Training injections may draw their FWHM from a spread around the base's (``psf_spread``, e.g.
0.5..1.1 x, never below 2.5 px): the one training night had poor seeing (PSF planes of 7..9
px, 1.4..1.8"), while other nights reach 4 px and LSST's median is 3.5 px; validation and test
injections keep each base's own PSF.

**Kinds** (label): ``point`` (new point source near the centre, PSF-fit S/N 5..200 log-uniform)
and ``variable`` (a star in both, its flux changed by S/N 5..100, either sign) are real;
``dipole`` (a star misregistered by 0.4..2 px between science and template), ``cosmic_ray``
(a sharp 1-px track or cluster, 15..300 sigma, science only), ``bad_subtraction`` (a bright
star whose matched template has the wrong width and scale: a ring residual), ``edge`` (a
detector edge: a band of missing pixels in all three, glowing in the difference), ``blank``
(all-NaN or all-zero cutouts) and ``noise`` (no source, or a bump below S/N 3) are bogus.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.preprocess import rubin_cutout_centre
from schemas.alert import Alert, Stamp

__all__ = ["Base", "Injection", "REAL_KINDS", "BOGUS_KINDS", "KIND_WEIGHTS", "base_from_alert", "inject",
           "injection_set", "as_alert", "psf_fwhm_px", "DEFAULT_FWHM_PX"]

DEFAULT_FWHM_PX = 3.5          # LSST's 0.7" median seeing at 0.2" per pixel
REAL_KINDS = ("point", "variable")
BOGUS_KINDS = ("dipole", "cosmic_ray", "bad_subtraction", "edge", "blank", "noise")
#: how often each kind is drawn: half real, half bogus
KIND_WEIGHTS = {"point": 0.30, "variable": 0.20, "dipole": 0.13, "cosmic_ray": 0.10, "bad_subtraction": 0.10,
                "edge": 0.05, "blank": 0.04, "noise": 0.08}


@dataclass(frozen=True)
class Base:
    """A real alert's cutouts, ready for injections (float32, as the packet stores them)."""

    alert: Alert
    science: np.ndarray
    template: np.ndarray
    difference: np.ndarray
    sigma: np.ndarray          # per-pixel noise of the difference (from its variance plane)
    fwhm_px: float


@dataclass(frozen=True)
class Injection:
    """One labelled triplet made from a base."""

    science: np.ndarray
    template: np.ndarray
    difference: np.ndarray
    label: int                 # 1 real, 0 bogus
    kind: str
    base_id: int               # diaSourceId of the base alert
    snr: float                 # PSF-fit S/N of the injected change in the difference (0 where none)


def psf_fwhm_px(alert: Alert) -> float:
    """FWHM of the alert's PSF plane in pixels (2 x radius of the half-maximum area), else the default."""
    psf = alert.difference.extra.get("psf") if alert.difference.extra else None
    if psf is None or np.ndim(psf) != 2:
        return DEFAULT_FWHM_PX
    psf = np.nan_to_num(np.asarray(psf, dtype=np.float64))
    peak = psf.max()
    if peak <= 0:
        return DEFAULT_FWHM_PX
    fwhm = 2.0 * np.sqrt((psf >= 0.5 * peak).sum() / np.pi)
    return float(np.clip(fwhm, 2.0, 12.0))


def base_from_alert(alert: Alert) -> Base:
    """The alert's cutouts and noise; the variance plane where the packet has one, else the
    difference's robust noise everywhere."""
    sci, tpl, diff = (np.asarray(s.data, dtype=np.float32) for s in (alert.science, alert.template, alert.difference))
    variance = alert.difference.extra.get("variance") if alert.difference.extra else None
    finite = diff[np.isfinite(diff)]
    robust = 1.4826 * float(np.median(np.abs(finite - np.median(finite)))) if finite.size else 1.0
    if variance is not None and np.shape(variance) == diff.shape:
        var = np.asarray(variance, dtype=np.float64)
        good = np.isfinite(var) & (var > 0)
        fill = float(np.median(var[good])) if good.any() else robust ** 2
        sigma = np.sqrt(np.where(good, var, fill))
    else:
        sigma = np.full(diff.shape, robust if robust > 0 else 1.0)
    return Base(alert, sci, tpl, diff, sigma.astype(np.float32), psf_fwhm_px(alert))


def _gaussian(shape: tuple[int, int], y: float, x: float, fwhm: float) -> np.ndarray:
    """Unit-flux circular Gaussian centred at pixel (y, x), sampled at pixel centres."""
    s = fwhm / 2.3548
    yy, xx = np.indices(shape, dtype=np.float64)
    return (np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s)) / (2 * np.pi * s * s)).astype(np.float32)


def _flux_for_snr(snr: float, sigma_pix: float, fwhm: float) -> float:
    """Flux whose PSF-fit S/N is ``snr`` on background noise ``sigma_pix`` (Gaussian PSF:
    noise-equivalent area 4 pi s^2)."""
    s = fwhm / 2.3548
    return float(snr * sigma_pix * np.sqrt(4 * np.pi) * s)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _clean(base: Base, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(science, template, difference) with the base alert's own source removed (module docstring)."""
    noise = (rng.standard_normal(base.difference.shape) * base.sigma).astype(np.float32)
    science = base.science - np.nan_to_num(base.difference) + noise
    return science.astype(np.float32), base.template.copy(), noise


MIN_FWHM_PX = 2.5


def inject(base: Base, kind: str, rng: np.random.Generator,
           psf_spread: tuple[float, float] | None = None) -> Injection:
    """One triplet of ``kind`` (see the module docstring) on ``base``; ``psf_spread`` (low,
    high): the injected PSF's FWHM is the base's times a uniform draw in it."""
    sci, tpl, diff = _clean(base, rng)
    shape = diff.shape
    cy, cx = rubin_cutout_centre(shape[0]), rubin_cutout_centre(shape[1])
    y, x = cy + rng.uniform(-1, 1), cx + rng.uniform(-1, 1)
    fwhm = base.fwhm_px
    if psf_spread is not None:
        fwhm = float(np.clip(fwhm * rng.uniform(*psf_spread), MIN_FWHM_PX, 12.0))
    sigma = float(np.median(base.sigma))
    snr = 0.0
    label = 1 if kind in REAL_KINDS else 0
    if kind == "point":
        snr = _log_uniform(rng, 5, 200)
        signal = _flux_for_snr(snr, sigma, fwhm) * _gaussian(shape, y, x, fwhm)
        sci, diff = sci + signal, diff + signal
    elif kind == "variable":
        star = _flux_for_snr(_log_uniform(rng, 10, 500), sigma, fwhm)
        snr = _log_uniform(rng, 5, 100) * rng.choice([-1.0, 1.0])
        change = max(_flux_for_snr(snr, sigma, fwhm), -0.95 * star)   # a star cannot fade below nothing
        snr = change / _flux_for_snr(1.0, sigma, fwhm)
        tpl = tpl + star * _gaussian(shape, y, x, fwhm * rng.uniform(0.8, 1.0))
        sci = sci + (star + change) * _gaussian(shape, y, x, fwhm)
        diff = diff + change * _gaussian(shape, y, x, fwhm)
    elif kind == "dipole":
        star = _flux_for_snr(_log_uniform(rng, 20, 1000), sigma, fwhm)
        angle, shift = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 2.0)
        ty, tx = y + shift * np.sin(angle), x + shift * np.cos(angle)
        tpl = tpl + star * _gaussian(shape, ty, tx, fwhm * rng.uniform(0.8, 1.0))
        sci = sci + star * _gaussian(shape, y, x, fwhm)
        diff = diff + star * (_gaussian(shape, y, x, fwhm) - _gaussian(shape, ty, tx, fwhm))
    elif kind == "cosmic_ray":
        hit = np.zeros(shape, np.float32)
        length = int(rng.integers(1, 10))
        angle = rng.uniform(0, np.pi)
        for step in range(length):
            py, px = int(round(y + step * np.sin(angle))), int(round(x + step * np.cos(angle)))
            if 0 <= py < shape[0] and 0 <= px < shape[1]:
                hit[py, px] = _log_uniform(rng, 15, 300) * sigma
        sci, diff = sci + hit, diff + hit
    elif kind == "bad_subtraction":
        star = _flux_for_snr(_log_uniform(rng, 100, 5000), sigma, fwhm)
        width = rng.choice([rng.uniform(0.7, 0.88), rng.uniform(1.12, 1.35)])
        scale = rng.uniform(0.9, 1.1)
        tpl = tpl + star * _gaussian(shape, y, x, fwhm * rng.uniform(0.8, 1.0))
        sci = sci + star * _gaussian(shape, y, x, fwhm)
        diff = diff + star * (_gaussian(shape, y, x, fwhm) - scale * _gaussian(shape, y, x, fwhm * width))
    elif kind == "edge":
        side, depth = int(rng.integers(0, 4)), int(shape[0] * rng.uniform(0.25, 0.5))
        mask = np.zeros(shape, bool)
        rows_cols = np.indices(shape)
        axis, low = side % 2, side < 2
        coord = rows_cols[axis]
        boundary = depth if low else shape[axis] - depth
        mask = coord < boundary if low else coord >= boundary
        distance = np.abs(coord - boundary).astype(np.float32)
        glow = _log_uniform(rng, 5, 100) * sigma * np.exp(-distance / rng.uniform(0.7, 3.0))
        diff = diff + glow * rng.choice([-1.0, 1.0])
        sci = sci + glow
        missing = rng.choice([np.nan, 0.0])
        sci, tpl, diff = (np.where(mask, np.float32(missing), p).astype(np.float32) for p in (sci, tpl, diff))
    elif kind == "blank":
        which = int(rng.integers(0, 4))
        value = np.float32(rng.choice([np.nan, 0.0]))
        blank = np.full(shape, value, np.float32)
        if which == 0:
            sci, tpl, diff = blank, blank.copy(), blank.copy()
        elif which == 1:
            diff = blank
        elif which == 2:
            sci = blank
        else:
            tpl = blank
    elif kind == "noise":
        if rng.random() < 0.5:
            snr = rng.uniform(0.5, 3.0)
            bump = _flux_for_snr(snr, sigma, fwhm) * _gaussian(shape, y, x, fwhm)
            sci, diff = sci + bump, diff + bump
    else:
        raise ValueError(f"unknown injection kind {kind!r} (known: {REAL_KINDS + BOGUS_KINDS})")
    return Injection(sci.astype(np.float32), tpl.astype(np.float32), diff.astype(np.float32), label, kind,
                     int(base.alert.alert_id), float(snr))


def injection_set(bases: Sequence[Base], per_base: int, seed: int, kinds: dict[str, float] | None = None,
                  psf_spread: tuple[float, float] | None = None) -> list[Injection]:
    """``per_base`` injections on every base, kinds drawn by ``kinds`` weights (default
    :data:`KIND_WEIGHTS`), reproducible from ``seed``; ``psf_spread`` as for :func:`inject`."""
    weights = dict(kinds or KIND_WEIGHTS)
    names = list(weights)
    p = np.asarray([weights[k] for k in names], dtype=np.float64)
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    return [inject(base, names[int(rng.choice(len(names), p=p))], rng, psf_spread)
            for base in bases for _ in range(per_base)]


def as_alert(injection: Injection, base: Base) -> Alert:
    """The injection as an :class:`Alert` (the base alert's headers and ids), so it goes
    through the service's own preprocessing like any alert."""
    alert = base.alert

    def stamp(old: Stamp, data: np.ndarray) -> Stamp:
        return Stamp(data=data, header=old.header, extra={})

    return dataclasses.replace(alert, science=stamp(alert.science, injection.science),
                               template=stamp(alert.template, injection.template),
                               difference=stamp(alert.difference, injection.difference),
                               survey_scores={}, survey_score_versions={})
