"""Real/bogus injection set built on real ZTF stamps.

Why injections: no hand-labelled difference-image set is reachable from these machines. The
DES difference-imaging pipeline trained its real/bogus classifier (Goldstein et al. 2015) on
point sources injected into real images ("fakes") as the positive class; the negatives here are
the artefact families the SDSS-II hand scanners listed (Artefact, Dipole, Saturated star;
Bailey et al. 2007, the real/bogus CNN paper in ``../shared/seeds/004``), synthesised on top of
real stamps so the backgrounds, noise and neighbouring sources are the survey's own.

The base problem: every real ZTF alert's difference stamp already holds the detection the alert
was sent for (real or bogus) at its centre. Using the stamps as they are would put that unknown
source under every injected example, and the network could learn the base's own label instead
of ours. So each base is *cleaned* (:func:`clean_base`):

* ``template``: the survey's template stamp, unchanged (a coadd of earlier epochs; it holds the
  static sky but not the transient).
* ``difference background``: the survey's difference stamp with a disc of radius
  ``max(8, 3 FWHM)`` px around the centre (where the alert's own candidate sits) replaced by
  Gaussian noise with the robust (MAD) sigma and median of the pixels outside it. The outskirts
  keep whatever the survey's subtraction left there (other residuals, real noise texture); those
  are shared by both classes, so they carry no label.
* ``science background``: ``template + difference background``. ZTF's template cutouts are
  scaled to the science image's photometric system (their medians agree), and the difference
  is science minus the PSF-matched template, so this reproduces the science stamp without the
  candidate, with science-level noise.

Injections (all on the cleaned base, centred within +-1 px as alerts are):

* real ``point``: a Moffat PSF (beta 2.5..4.5) with FWHM = the alert's ``candidate.fwhm`` x
  U(0.9, 1.1), flux for a PSF-fit S/N log-uniform in [4, 300], Poisson noise of the source
  (gain 6.2 e-/DN), added to science and difference.
* real ``variable``: a star in the template of flux F0 that brightens by dF in the science
  image: template gets F0, science F0 + dF, difference dF (a clean subtraction of a variable).
* bogus ``dipole``: the same star in template and science with the science copy shifted by
  0.3..1.5 px (sub-pixel misregistration) and/or a PSF-width mismatch of 5..25 %, difference =
  science copy - template copy: positive and negative lobes, or a ring.
* bogus ``cosmic_ray``: a hit narrower than the PSF (1..3 px blob or a 3..15 px track, width
  < 1 px) in science and difference only, 10..300 sigma.
* bogus ``hot_pixel`` / ``bad_column``: a single pixel or a column/row segment raised in science
  and difference (a detector defect that the template, made from dithered exposures, lacks).
* bogus ``saturated``: a bright star in template and science whose science core is clipped at a
  saturation level, with a bleed trail along the column: the difference shows a negative core,
  a positive ring and the trail.
* bogus ``noise``: the cleaned base alone (a detection on a noise fluctuation).

Each stamp triplet (science, template, difference) is rotated by a multiple of 90 degrees and
maybe flipped, the same for all three. The FWHM, S/N and amplitude ranges are chosen to span
what ZTF sends; they are our choice, not measured distributions, and the class balance is ours.

What this means: a network trained here learns "PSF-shaped positive source on a clean
subtraction" versus these artefact families. It never sees the survey's real artefact
population, so its agreement with ZTF's ``drb`` on real alerts is the number to trust, not its
accuracy on this synthetic set.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from schemas.alert import Alert

__all__ = [
    "STAMP_SIZE",
    "REAL_KINDS",
    "BOGUS_KINDS",
    "BaseStamp",
    "RealBogusSet",
    "clean_base",
    "bases_from_alerts",
    "moffat_psf",
    "generate",
]

STAMP_SIZE = 63
GAIN_E_PER_DN = 6.2
REAL_KINDS: tuple[str, ...] = ("point", "variable")
BOGUS_KINDS: tuple[str, ...] = ("dipole", "cosmic_ray", "hot_pixel", "bad_column", "saturated", "noise")
#: Share of each kind within its class (sums to 1 per class).
_REAL_WEIGHTS = (0.7, 0.3)
_BOGUS_WEIGHTS = (0.3, 0.15, 0.1, 0.1, 0.15, 0.2)


@dataclass(frozen=True)
class BaseStamp:
    """A cleaned real stamp triplet (no candidate at the centre), 63 x 63 float32 each."""

    science: np.ndarray
    template: np.ndarray
    difference: np.ndarray
    noise_sigma: float          # robust sigma of the difference background
    fwhm_px: float              # the alert's candidate.fwhm (pixels, ZTF 1.01"/px)
    group: str                  # the alert's object id: splits keep a base on one side
    source_id: str              # survey:alert id of the base alert


@dataclass(frozen=True)
class RealBogusSet:
    """Generated examples: ``stamps`` (N, 3, 63, 63) float32 as (science, template, difference)."""

    stamps: np.ndarray
    labels: np.ndarray          # 0 = bogus, 1 = real
    kinds: tuple[str, ...]      # generator kind per example
    groups: tuple[str, ...]     # base object id per example

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _robust_stats(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    med = float(np.median(values))
    sigma = float(1.4826 * np.median(np.abs(values - med)))
    return med, max(sigma, 1e-3)


def clean_base(alert: Alert, fwhm_px: float | None, rng: np.random.Generator) -> BaseStamp | None:
    """The alert's stamps with its own candidate removed (see the module docstring).

    ``fwhm_px`` is the alert's ``candidate.fwhm`` (None or implausible: 2.2 px, ZTF's median).
    Returns None for stamps that cannot serve as a base (not 63 x 63, or mostly blank).
    """
    stamps = (alert.science.data, alert.template.data, alert.difference.data)
    if any(s.shape != (STAMP_SIZE, STAMP_SIZE) for s in stamps):
        return None
    if any(np.mean(~np.isfinite(s)) > 0.05 for s in stamps):
        return None
    template = np.array(alert.template.data, dtype=np.float64)
    difference = np.array(alert.difference.data, dtype=np.float64)
    t_med, _ = _robust_stats(template)
    template[~np.isfinite(template)] = t_med
    fwhm = float(fwhm_px) if fwhm_px is not None and 1.0 <= fwhm_px <= 8.0 else 2.2
    yy, xx = np.mgrid[0:STAMP_SIZE, 0:STAMP_SIZE]
    centre = (STAMP_SIZE - 1) / 2
    radius = max(8.0, 3.0 * fwhm)
    disc = (yy - centre) ** 2 + (xx - centre) ** 2 <= radius**2
    outside = difference[~disc]
    d_med, d_sigma = _robust_stats(outside)
    fill = ~disc & ~np.isfinite(difference) | disc
    difference[fill] = rng.normal(d_med, d_sigma, size=int(fill.sum()))
    science = template + difference
    return BaseStamp(
        science=science.astype(np.float32),
        template=template.astype(np.float32),
        difference=difference.astype(np.float32),
        noise_sigma=d_sigma,
        fwhm_px=fwhm,
        group=alert.object_id,
        source_id=alert.key,
    )


def bases_from_alerts(
    alerts: Iterable[Alert],
    seed: int,
    fwhm_by_alert_id: Mapping[int, float] | None = None,
    exclude_object_ids: Iterable[str] = (),
) -> list[BaseStamp]:
    """Clean every usable alert into a base, skipping objects in ``exclude_object_ids``.

    ``fwhm_by_alert_id`` maps candid -> candidate.fwhm (see :func:`engines.training.ztf_files.candidate_fields`).
    """
    excluded = set(exclude_object_ids)
    fwhms = fwhm_by_alert_id or {}
    rng = np.random.default_rng(seed)
    bases = []
    for alert in alerts:
        if alert.object_id in excluded:
            continue
        base = clean_base(alert, fwhms.get(int(alert.alert_id)), rng)
        if base is not None:
            bases.append(base)
    return bases


def moffat_psf(size: int, x0: float, y0: float, fwhm: float, beta: float, subsample: int = 3) -> np.ndarray:
    """A Moffat profile of unit total flux on a ``size`` x ``size`` grid, pixel-integrated by
    ``subsample`` x ``subsample`` sampling. Moffat is the usual ground-based seeing profile
    (wings heavier than a Gaussian); ``fwhm`` and the centre are in pixels."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    offsets = (np.arange(subsample) + 0.5) / subsample - 0.5
    grid = np.arange(size)
    yy = (grid[:, None, None, None] + offsets[None, None, :, None]) - y0
    xx = (grid[None, :, None, None] + offsets[None, None, None, :]) - x0
    profile = (1.0 + (xx**2 + yy**2) / alpha**2) ** (-beta)
    image = profile.mean(axis=(2, 3))
    norm = (beta - 1.0) / (np.pi * alpha**2)
    return (image * norm).astype(np.float64)


def _flux_for_snr(snr: float, sigma: float, fwhm: float) -> float:
    """PSF-fit S/N of a background-limited point source: F / (sigma sqrt(4 pi) s), s = FWHM/2.355."""
    return float(snr * sigma * np.sqrt(4.0 * np.pi) * fwhm / 2.355)


def _poisson(flux_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shot noise of an injected source (DN), Gaussian approximation."""
    variance = np.clip(flux_image, 0.0, None) / GAIN_E_PER_DN
    return rng.normal(0.0, 1.0, size=flux_image.shape) * np.sqrt(variance)


def _centre(rng: np.random.Generator) -> tuple[float, float]:
    c = (STAMP_SIZE - 1) / 2
    return c + rng.uniform(-1.0, 1.0), c + rng.uniform(-1.0, 1.0)


def _inject_real(base: BaseStamp, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    sci, tpl, dif = (base.science.astype(np.float64), base.template.astype(np.float64),
                     base.difference.astype(np.float64))
    fwhm = base.fwhm_px * rng.uniform(0.9, 1.1)
    beta = rng.uniform(2.5, 4.5)
    y0, x0 = _centre(rng)
    psf = moffat_psf(STAMP_SIZE, x0, y0, fwhm, beta)
    snr = float(np.exp(rng.uniform(np.log(4.0), np.log(300.0))))
    flux = _flux_for_snr(snr, base.noise_sigma, fwhm)
    source = flux * psf
    shot = _poisson(source, rng)
    if kind == "variable":
        star = flux * rng.uniform(0.5, 20.0) * psf
        tpl = tpl + star
        sci = sci + star + _poisson(star, rng)
    sci = sci + source + shot
    dif = dif + source + shot
    return sci, tpl, dif


def _inject_bogus(base: BaseStamp, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    sci, tpl, dif = (base.science.astype(np.float64), base.template.astype(np.float64),
                     base.difference.astype(np.float64))
    sigma = base.noise_sigma
    size = STAMP_SIZE
    y0, x0 = _centre(rng)
    if kind == "dipole":
        fwhm = base.fwhm_px * rng.uniform(0.9, 1.1)
        beta = rng.uniform(2.5, 4.5)
        flux = _flux_for_snr(float(np.exp(rng.uniform(np.log(20.0), np.log(2000.0)))), sigma, fwhm)
        shift = rng.uniform(0.3, 1.5) if rng.random() < 0.8 else rng.uniform(0.0, 0.3)
        angle = rng.uniform(0, 2 * np.pi)
        width_ratio = 1.0 + rng.uniform(0.05, 0.25) * rng.choice((-1.0, 1.0)) if rng.random() < 0.5 else 1.0
        in_template = flux * moffat_psf(size, x0, y0, fwhm, beta)
        in_science = flux * rng.uniform(0.9, 1.1) * moffat_psf(
            size, x0 + shift * np.cos(angle), y0 + shift * np.sin(angle), fwhm * width_ratio, beta)
        shot = _poisson(in_science, rng)
        tpl = tpl + in_template
        sci = sci + in_science + shot
        dif = dif + (in_science - in_template) + shot
    elif kind == "cosmic_ray":
        hit = np.zeros((size, size))
        amplitude = sigma * float(np.exp(rng.uniform(np.log(10.0), np.log(300.0))))
        if rng.random() < 0.5:  # compact hit: 1-3 pixels
            for _ in range(int(rng.integers(1, 4))):
                hit[int(round(y0)) + int(rng.integers(-1, 2)), int(round(x0)) + int(rng.integers(-1, 2))] += (
                    amplitude * rng.uniform(0.5, 1.0))
        else:  # a track: a grazing muon / electron, narrower than the PSF
            length = rng.uniform(3.0, 15.0)
            angle = rng.uniform(0, np.pi)
            for t in np.linspace(-length / 2, length / 2, int(length * 3)):
                yy = int(round(y0 + t * np.sin(angle)))
                xx = int(round(x0 + t * np.cos(angle)))
                if 0 <= yy < size and 0 <= xx < size:
                    hit[yy, xx] = amplitude * rng.uniform(0.6, 1.0)
        sci = sci + hit
        dif = dif + hit
    elif kind == "hot_pixel":
        defect = np.zeros((size, size))
        iy, ix = int(round(y0)), int(round(x0))
        defect[iy, ix] = sigma * float(np.exp(rng.uniform(np.log(10.0), np.log(1000.0))))
        if rng.random() < 0.3:  # a warm neighbour (charge bleeding into the next pixel)
            defect[iy + int(rng.choice((-1, 1))), ix] = defect[iy, ix] * rng.uniform(0.1, 0.5)
        sci = sci + defect
        dif = dif + defect
    elif kind == "bad_column":
        defect = np.zeros((size, size))
        level = sigma * float(np.exp(rng.uniform(np.log(3.0), np.log(100.0))))
        ix = int(round(x0))
        start = int(rng.integers(0, size // 2 + 4)) if rng.random() < 0.5 else 0
        defect[start:, ix] = level * rng.uniform(0.8, 1.2, size=size - start)
        if rng.random() < 0.5:
            defect = defect.T
        sci = sci + defect
        dif = dif + defect
    elif kind == "saturated":
        fwhm = base.fwhm_px * rng.uniform(0.9, 1.1)
        beta = rng.uniform(2.5, 4.5)
        flux = sigma * float(np.exp(rng.uniform(np.log(2e4), np.log(5e5))))
        star = flux * moffat_psf(size, x0, y0, fwhm, beta)
        star_science = star * rng.uniform(0.95, 1.1)
        saturation = float(np.max(star)) * rng.uniform(0.1, 0.6)
        clipped = np.minimum(star_science, saturation)
        # Bleed trail: the charge clipped off the core runs along the column.
        excess = float((star_science - clipped).sum())
        trail_length = int(min(size // 2 - 1, max(2, excess / max(saturation, 1e-6) / 2)))
        ix = int(round(x0))
        iy = int(round(y0))
        trail = np.zeros((size, size))
        trail[max(0, iy - trail_length):min(size, iy + trail_length + 1), ix] = saturation
        science_star = np.maximum(clipped, trail)
        tpl = tpl + star
        sci = sci + science_star
        dif = dif + (science_star - star) + _poisson(science_star, rng)
    elif kind == "noise":
        pass
    else:
        raise ValueError(f"unknown bogus kind {kind!r}")
    return sci, tpl, dif


def _augment(triplet: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same random rotation by k x 90 degrees and flip for all three stamps."""
    out = np.rot90(triplet, k=int(rng.integers(0, 4)), axes=(1, 2))
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def generate(
    bases: Sequence[BaseStamp], count: int, seed: int, real_fraction: float = 0.5
) -> RealBogusSet:
    """``count`` labelled triplets drawn over ``bases`` (each base used about equally)."""
    if not bases:
        raise ValueError("no base stamps to inject into")
    rng = np.random.default_rng(seed)
    stamps = np.empty((count, 3, STAMP_SIZE, STAMP_SIZE), dtype=np.float32)
    labels = np.empty(count, dtype=np.int64)
    kinds: list[str] = []
    groups: list[str] = []
    order = rng.permutation(np.arange(count) % len(bases))
    for i in range(count):
        base = bases[int(order[i])]
        if rng.random() < real_fraction:
            kind = str(rng.choice(REAL_KINDS, p=_REAL_WEIGHTS))
            sci, tpl, dif = _inject_real(base, kind, rng)
            labels[i] = 1
        else:
            kind = str(rng.choice(BOGUS_KINDS, p=_BOGUS_WEIGHTS))
            sci, tpl, dif = _inject_bogus(base, kind, rng)
            labels[i] = 0
        stamps[i] = _augment(np.stack([sci, tpl, dif]), rng)
        kinds.append(kind)
        groups.append(base.group)
    return RealBogusSet(stamps=stamps, labels=labels, kinds=tuple(kinds), groups=tuple(groups))
