"""Simulated WISE W1 / W2 / W3 cutouts of stars, quasars and galaxies for IICnet.

Why a simulator: the paper's 21,736 labelled WISE cutouts (SDSS spectroscopic classes) are not
reachable from these machines. What the images carry is colour and (for nearby galaxies) extent,
so the simulator draws those from published distributions:

* **Geometry.** A 50" x 50" cutout around the source, resampled to 80 x 80 px (0.625"/px), as
  IICnet's input. The underlying images are WISE Atlas tiles at 1.375"/px: noise is drawn on the
  native 37 x 37 grid and bilinearly resampled, so it carries the pixel-to-pixel correlation that
  resampling gives real cutouts.
* **PSF.** Gaussian cores of FWHM 6.1", 6.4", 6.5" in W1, W2, W3 (Wright et al. 2010, AJ 140,
  1868) plus a 5 % Gaussian wing of 3x the width (WISE PSFs have extended wings).
* **Photometry.** Vega magnitudes to data numbers with the Atlas image zero points MAGZP =
  20.5, 19.5, 18.0 (W1, W2, W3). Background noise per native pixel is set so a point source at
  the AllWISE 5 sigma depths (16.9, 16.0, 11.5 mag) has S/N 5; target sources have W1 in
  [11, 16.5] (detected in W1, as SDSS-matched sources are).
* **Colours** (Wright et al. 2010 Fig. 12; Stern et al. 2012, ApJ 753, 30; Assef et al. 2013):
  stars W1-W2 ~ N(0, 0.05), W2-W3 ~ N(0.1, 0.25) (Rayleigh-Jeans tails); quasars
  W1-W2 ~ N(1.1, 0.3) (the Stern et al. W1-W2 >= 0.8 criterion is ~80 % complete, so some fall
  below it), W2-W3 ~ N(2.9, 0.45); galaxies a mixture of early types (25 %: W1-W2 ~ N(0.05,
  0.1), W2-W3 ~ N(1.0, 0.45)), star-forming spirals (60 %: N(0.3, 0.2), N(3.1, 0.6)) and
  dusty starbursts / obscured AGN hosts (15 %: N(0.75, 0.35), N(4.1, 0.5)), which overlap the
  quasars as the paper's colour-colour figure shows.
* **Morphology.** Stars and quasars are point sources (quasars at z > 0.3 are unresolved at
  6"). Galaxies are Sersic profiles (n in [0.8, 4]) with half-light radius log-uniform in
  [0.5", 12"] and axis ratio [0.3, 1], so the largest are resolved and the smallest look stellar.
* **Neighbours.** A Poisson number (mean 1.2) of field stars / galaxies with W1 in [12, 18.5]
  anywhere in the cutout, a centroid jitter of +-1" for the target, and a sky pedestal.

What this means: the classes are separable mainly by W1-W2 and W2-W3 colour and by extent,
with overlap where the published distributions overlap. A network that does well here has
learnt those published relations, not the survey's real population, selection or artefacts
(blends with bright stars, diffraction spikes, latent images); its figures on this set are not
the paper's figures on SDSS-labelled WISE data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WISE_LABELS", "BANDS", "CUTOUT_PX", "PIXEL_SCALE_ARCSEC", "WiseSet", "generate", "render_cutout"]

WISE_LABELS: tuple[str, ...] = ("galaxy", "quasar", "star")    # IICnet's column order
BANDS: tuple[str, ...] = ("W1", "W2", "W3")
CUTOUT_PX = 80
CUTOUT_ARCSEC = 50.0
PIXEL_SCALE_ARCSEC = CUTOUT_ARCSEC / CUTOUT_PX                # 0.625"/px after resampling
NATIVE_SCALE_ARCSEC = 1.375                                   # WISE Atlas tiles
PSF_FWHM_ARCSEC = (6.1, 6.4, 6.5)
MAGZP = (20.5, 19.5, 18.0)
DEPTH_5SIGMA = (16.9, 16.0, 11.5)


@dataclass(frozen=True)
class WiseSet:
    """``images`` (N, 3, 80, 80) float32 in DN per band; ``labels`` index into WISE_LABELS."""

    images: np.ndarray
    labels: np.ndarray
    colours: np.ndarray         # (N, 2): W1-W2, W2-W3 of the target (for plots and checks)
    groups: tuple[str, ...]     # one sky position per example: each its own group

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _sigma_pixel_native(band: int) -> float:
    """Background sigma per native pixel so a point source at the 5 sigma depth has S/N 5."""
    flux_limit = 10 ** (-0.4 * (DEPTH_5SIGMA[band] - MAGZP[band]))
    s_native = PSF_FWHM_ARCSEC[band] / 2.355 / NATIVE_SCALE_ARCSEC
    return float(flux_limit / 5.0 / (np.sqrt(4 * np.pi) * s_native))


def _psf_kernel(band: int, size: int = CUTOUT_PX) -> np.ndarray:
    """Unit-flux PSF on the 80 x 80 grid, centred at (size/2, size/2) for FFT convolution."""
    s = PSF_FWHM_ARCSEC[band] / 2.355 / PIXEL_SCALE_ARCSEC
    yy, xx = np.mgrid[0:size, 0:size] - size / 2
    r2 = xx**2 + yy**2
    core = np.exp(-r2 / (2 * s**2))
    wing = np.exp(-r2 / (2 * (3 * s) ** 2))
    kernel = 0.95 * core / core.sum() + 0.05 * wing / wing.sum()
    return kernel / kernel.sum()


_KERNELS_FFT = None


def _kernels_fft() -> list[np.ndarray]:
    global _KERNELS_FFT  # cached: the three kernels never change
    if _KERNELS_FFT is None:
        _KERNELS_FFT = [np.fft.rfft2(np.fft.ifftshift(_psf_kernel(b))) for b in range(3)]
    return _KERNELS_FFT


def _sersic_image(x0: float, y0: float, r_e_px: float, n: float, q: float, theta: float) -> np.ndarray:
    """A unit-flux Sersic profile on the 80 x 80 grid (3 x 3 sub-sampled), before the PSF."""
    sub = 3
    grid = (np.arange(CUTOUT_PX * sub) + 0.5) / sub - 0.5
    yy, xx = np.meshgrid(grid - y0, grid - x0, indexing="ij")
    c, s = np.cos(theta), np.sin(theta)
    u = xx * c + yy * s
    v = (-xx * s + yy * c) / q
    r = np.sqrt(u**2 + v**2)
    b_n = 2 * n - 1 / 3 + 4 / (405 * n)
    profile = np.exp(-b_n * ((r / max(r_e_px, 0.3)) ** (1 / n) - 1))
    image = profile.reshape(CUTOUT_PX, sub, CUTOUT_PX, sub).mean(axis=(1, 3))
    total = image.sum()
    return image / total if total > 0 else image


def _point(x0: float, y0: float) -> np.ndarray:
    """A unit-flux point at a sub-pixel position (bilinear split over 4 pixels)."""
    image = np.zeros((CUTOUT_PX, CUTOUT_PX))
    ix, iy = int(np.floor(x0)), int(np.floor(y0))
    fx, fy = x0 - ix, y0 - iy
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            if 0 <= iy + dy < CUTOUT_PX and 0 <= ix + dx < CUTOUT_PX:
                image[iy + dy, ix + dx] += wy * wx
    return image


def _colours(label: str, rng: np.random.Generator) -> tuple[float, float, str]:
    """(W1-W2, W2-W3, subtype) from the published distributions in the module docstring."""
    if label == "star":
        return rng.normal(0.0, 0.05), rng.normal(0.1, 0.25), "star"
    if label == "quasar":
        return rng.normal(1.1, 0.3), rng.normal(2.9, 0.45), "quasar"
    kind = rng.choice(("early", "spiral", "starburst"), p=(0.25, 0.6, 0.15))
    if kind == "early":
        return rng.normal(0.05, 0.1), rng.normal(1.0, 0.45), kind
    if kind == "spiral":
        return rng.normal(0.3, 0.2), rng.normal(3.1, 0.6), kind
    return rng.normal(0.75, 0.35), rng.normal(4.1, 0.5), kind


def _shape_for(label: str, rng: np.random.Generator) -> tuple[float, float, float, float] | None:
    """Sersic (r_e px, n, q, theta) for galaxies; None for point sources."""
    if label != "galaxy":
        return None
    r_e_arcsec = float(np.exp(rng.uniform(np.log(0.5), np.log(12.0))))
    return r_e_arcsec / PIXEL_SCALE_ARCSEC, rng.uniform(0.8, 4.0), rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)


def _add_source(scene: np.ndarray, label: str, w1: float, x0: float, y0: float, rng: np.random.Generator) -> tuple[float, float]:
    w12, w23, _ = _colours(label, rng)
    mags = (w1, w1 - w12, w1 - w12 - w23)
    shape = _shape_for(label, rng)
    unit = _point(x0, y0) if shape is None else _sersic_image(x0, y0, *shape)
    for band in range(3):
        scene[band] += unit * 10 ** (-0.4 * (mags[band] - MAGZP[band]))
    return w12, w23


def render_cutout(label: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """One (3, 80, 80) cutout in DN with the target of class ``label`` at the centre."""
    import torch
    import torch.nn.functional as F

    scene = np.zeros((3, CUTOUT_PX, CUTOUT_PX))
    centre = CUTOUT_PX / 2 - 0.5
    jitter = 1.0 / PIXEL_SCALE_ARCSEC
    colours = _add_source(scene, label, rng.uniform(11.0, 16.5),
                          centre + rng.uniform(-jitter, jitter), centre + rng.uniform(-jitter, jitter), rng)
    for _ in range(int(rng.poisson(1.2))):
        neighbour = str(rng.choice(("star", "galaxy", "quasar"), p=(0.55, 0.4, 0.05)))
        _add_source(scene, neighbour, rng.uniform(12.0, 18.5),
                    rng.uniform(0, CUTOUT_PX - 1), rng.uniform(0, CUTOUT_PX - 1), rng)
    kernels = _kernels_fft()
    image = np.empty_like(scene)
    for band in range(3):
        image[band] = np.fft.irfft2(np.fft.rfft2(scene[band]) * kernels[band], s=scene[band].shape)
    # Noise on the native 1.375"/px grid, resampled to the cutout grid (correlated, as in real
    # resampled cutouts), then a sky pedestal with a slight gradient.
    native = int(round(CUTOUT_ARCSEC / NATIVE_SCALE_ARCSEC)) + 1
    sigmas = np.array([_sigma_pixel_native(b) for b in range(3)])
    noise = rng.normal(size=(3, native, native)) * sigmas[:, None, None]
    noise = F.interpolate(torch.from_numpy(noise)[None], size=(CUTOUT_PX, CUTOUT_PX), mode="bilinear",
                          align_corners=True)[0].numpy()
    # Bilinear resampling lowers the per-pixel sigma; restore the native level.
    noise *= sigmas[:, None, None] / np.maximum(noise.std(axis=(1, 2)), 1e-9)[:, None, None]
    yy, xx = np.mgrid[0:CUTOUT_PX, 0:CUTOUT_PX] / CUTOUT_PX
    sky = sigmas[:, None, None] * (rng.uniform(-2, 2, size=(3, 1, 1)) + rng.normal(0, 0.5, size=(3, 1, 1)) * (xx - 0.5)
                                   + rng.normal(0, 0.5, size=(3, 1, 1)) * (yy - 0.5))
    return (image + noise + sky).astype(np.float32), colours


def generate(count: int, seed: int) -> WiseSet:
    """``count`` cutouts, classes balanced (as the paper's set nearly is)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(WISE_LABELS))
    images = np.empty((count, 3, CUTOUT_PX, CUTOUT_PX), dtype=np.float32)
    colours = np.empty((count, 2), dtype=np.float32)
    for i, label in enumerate(labels):
        images[i], colours[i] = render_cutout(WISE_LABELS[int(label)], rng)
    return WiseSet(images=images, labels=labels.astype(np.int64), colours=colours,
                   groups=tuple(f"wise-sim-{seed}-{i}" for i in range(count)))
