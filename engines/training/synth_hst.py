"""Simulated raw HST ACS/WFC chip frames: partial views of galaxies vs nebulae / star clusters.

Why a simulator: HR-CelestialNet's 7,813 labelled raw exposures (71 bodies) are MAST archive
files that cannot be fetched from these machines. What the network must learn is a scene class
under the raw-frame nuisances, so the simulator makes those nuisances the way the instrument
does (ACS Instrument Handbook, ch. 5 and the ACS Data Handbook):

* **Raw geometry.** One WFC chip as the ``_raw.fits`` ``SCI`` extension stores it: 2068 rows x
  4144 columns of 16-bit DN: 24 columns of physical pre-scan at each end of the serial register
  (left and right), 20 rows of virtual overscan, and the 2048 x 4096 exposed area. Each half
  (2048 columns) is read by its own amplifier with its own bias level (U(2000, 2600) DN) and a
  small row-to-row bias jitter; pre-scan and overscan pixels hold bias + read noise only.
* **Detector.** Gain 2 e-/DN, read noise 4 e- (2 DN), sky 20..120 e- per exposure, Poisson
  noise on sky + source, saturation at 65535 DN (16-bit), a few hot pixels.
* **Cosmic rays.** ACS/WFC sees ~1.2 events s^-1 cm^-2 ... in practice 2-4 % of pixels hit in a
  ~1000 s exposure; hits are 1-3 px blobs and tracks up to ~30 px long, 200..5000 e-.
* **Scenes** (rendered at the binned scale, see below), always partial views (the pointing is
  offset so the body may fill, cross or only clip the frame):
  - *galaxy*: a Sersic bulge (n 2..4) plus an exponential disc with logarithmic spiral-arm
    modulation (2..4 arms), a random inclination and position angle, dust-lane attenuation,
    star-forming knots along the arms, half-light radius 0.2..2 frame heights; plus background
    galaxies and a few foreground stars.
  - *nebula / star cluster*: a power-law (Kolmogorov-like, P(k) ~ k^-3.2) random field turned
    into filamentary emission by an exponential transform, and/or a Plummer-profile cluster
    of 200..3000 point sources with a power-law luminosity function (Salpeter-like slope),
    plus field stars.
  Each *body* (one galaxy or one nebula) is seen in several exposures with different pointings,
  orientations and exposure times: the group id is the body, so splits keep every view of a body
  on one side, as the paper insists.

Reduced resolution (stated in the model card): scenes are rendered on a grid binned by
``binning`` (4 by default: 512 x 1024 for the exposed area), each binned pixel's flux is spread
evenly over its ``binning`` x ``binning`` raw pixels, and the noise, bias, cosmic rays and
pre-/overscan are made at full raw resolution. Fine structure below the binned scale is absent,
which costs nothing for a network that sees the frame binned by the same factor, and is why the
same weights must not be used at full resolution.

What this means: the classes differ by the morphology these recipes produce. The network has
never seen a real ACS frame; its figures on this set say it can separate *these* scenes under
raw-frame nuisances, not that it reproduces the paper's 89 % on real MAST data.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["HST_LABELS", "RawGeometry", "ACS_WFC", "ACS_WFC_CHIPS", "HstFrame", "render_scene", "raw_frame", "generate", "iter_frames"]

HST_LABELS: tuple[str, ...] = ("galaxy", "nebula_star_cluster")   # HR-CelestialNet's column order
GAIN_E_PER_DN = 2.0
READ_NOISE_E = 4.0
FULL_WELL_DN = 65535


@dataclass(frozen=True)
class RawGeometry:
    """Where the exposed area sits in a raw chip extension (rows, columns)."""

    rows: int = 2068
    columns: int = 4144
    prescan_columns: int = 24         # each side
    overscan_rows: int = 20
    overscan_at_top: bool = True      # virtual overscan after the exposed rows (False: before)

    @property
    def exposed(self) -> tuple[int, int]:
        return self.rows - self.overscan_rows, self.columns - 2 * self.prescan_columns

    def exposed_slices(self) -> tuple[slice, slice]:
        h, w = self.exposed
        r0 = 0 if self.overscan_at_top else self.overscan_rows
        return slice(r0, r0 + h), slice(self.prescan_columns, self.prescan_columns + w)


ACS_WFC = RawGeometry()
#: chip number -> raw geometry: WFC2 is [SCI,1] with its virtual overscan after the exposed rows,
#: WFC1 is [SCI,2] with it before them (where engines.preprocess trims them).
ACS_WFC_CHIPS: dict[int, RawGeometry] = {2: ACS_WFC, 1: RawGeometry(overscan_at_top=False)}


@dataclass(frozen=True)
class HstFrame:
    """One raw chip frame (uint16 values as float32) and what it shows."""

    raw: np.ndarray
    label: int
    body: str
    exposure_time_s: float
    chip: int = 2                 # 2: [SCI,1] (overscan at the top); 1: [SCI,2] (at the bottom)


def _power_law_field(shape: tuple[int, int], slope: float, rng: np.random.Generator) -> np.ndarray:
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.sqrt(kx**2 + ky**2)
    k[0, 0] = 1.0
    amplitude = k ** (-slope / 2)
    amplitude[0, 0] = 0.0
    phases = rng.normal(size=amplitude.shape) + 1j * rng.normal(size=amplitude.shape)
    field = np.fft.irfft2(amplitude * phases, s=shape)
    return (field - field.mean()) / (field.std() + 1e-12)


def _stars(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, fluxes: np.ndarray, sigma_px: float) -> None:
    """Add Gaussian point sources (in place); small stamps around each star for speed."""
    h, w = image.shape
    half = max(2, int(np.ceil(4 * sigma_px)))
    offsets = np.arange(-half, half + 1)
    for x, y, f in zip(xs, ys, fluxes, strict=True):
        ix, iy = int(round(x)), int(round(y))
        if ix < -half or iy < -half or ix >= w + half or iy >= h + half:
            continue
        gy = np.exp(-((iy + offsets - y) ** 2) / (2 * sigma_px**2))
        gx = np.exp(-((ix + offsets - x) ** 2) / (2 * sigma_px**2))
        stamp = np.outer(gy, gx)
        stamp *= f / stamp.sum()
        y0, y1 = max(0, iy - half), min(h, iy + half + 1)
        x0, x1 = max(0, ix - half), min(w, ix + half + 1)
        if y1 > y0 and x1 > x0:
            image[y0:y1, x0:x1] += stamp[y0 - (iy - half):y1 - (iy - half), x0 - (ix - half):x1 - (ix - half)]


def _galaxy(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    # Pointing: the centre may sit inside, near or outside the frame (partial views).
    cx = rng.uniform(-0.3, 1.3) * w
    cy = rng.uniform(-0.3, 1.3) * h
    r_e = rng.uniform(0.2, 2.0) * h
    incl = np.arccos(rng.uniform(0.25, 1.0))
    pa = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(pa) + dy * np.sin(pa)
    v = (-dx * np.sin(pa) + dy * np.cos(pa)) / np.cos(incl)
    r = np.sqrt(u**2 + v**2) + 1e-6
    phi = np.arctan2(v, u)
    disc = np.exp(-1.678 * r / r_e)
    arms = int(rng.integers(2, 5))
    pitch = np.deg2rad(rng.uniform(10, 30))
    spiral = 0.5 * (1 + np.cos(arms * (phi - np.log(r / r_e + 1e-3) / np.tan(pitch))))
    disc *= 0.4 + 0.6 * spiral ** rng.uniform(1.0, 3.0)
    n = rng.uniform(2.0, 4.0)
    r_b = r_e * rng.uniform(0.1, 0.3)
    b_n = 2 * n - 1 / 3
    bulge = rng.uniform(0.5, 3.0) * np.exp(-b_n * ((r / r_b) ** (1 / n) - 1)) * np.exp(-b_n)
    image = disc + bulge
    if rng.random() < 0.6:  # dust lane along the major axis
        image *= 1 - rng.uniform(0.3, 0.8) * np.exp(-(v * np.cos(incl) / (0.03 * r_e + 1)) ** 2)
    # HII knots along the arms.
    knots = int(rng.integers(30, 300))
    kr = r_e * rng.exponential(0.8, size=knots)
    kphi = rng.uniform(0, 2 * np.pi, size=knots)
    kphi = kphi - (kphi % (2 * np.pi / arms)) + np.log(kr / r_e + 1e-3) / np.tan(pitch)
    ku, kv = kr * np.cos(kphi), kr * np.sin(kphi) * np.cos(incl)
    kx = cx + ku * np.cos(pa) - kv * np.sin(pa)
    ky = cy + ku * np.sin(pa) + kv * np.cos(pa)
    _stars(image, kx, ky, rng.uniform(0.5, 5.0, size=knots) * image.max() * 0.5, sigma_px=rng.uniform(0.7, 1.5))
    return image / (image.max() + 1e-12)


def _nebula_cluster(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    image = np.zeros(shape)
    mode = rng.choice(("nebula", "cluster", "both"), p=(0.35, 0.3, 0.35))
    if mode in ("nebula", "both"):
        field = _power_law_field(shape, 3.2, rng)
        gas = np.exp(rng.uniform(1.0, 2.0) * field)
        gas /= gas.max()
        if rng.random() < 0.5:  # ionisation front / shell edge crossing the frame
            yy, xx = np.mgrid[0:h, 0:w]
            angle = rng.uniform(0, 2 * np.pi)
            edge = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle) - rng.uniform(-0.3, 0.3) * w
            gas *= 1 / (1 + np.exp(-edge / (0.03 * w)))
        image += gas
    if mode in ("cluster", "both"):
        count = int(rng.integers(200, 3000))
        cx, cy = rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h
        a = rng.uniform(0.03, 0.3) * h
        radius = a / np.sqrt(rng.uniform(0.01, 1.0, size=count) ** (-2 / 3) - 1)   # Plummer
        theta = rng.uniform(0, 2 * np.pi, size=count)
        fluxes = (1 - rng.random(count)) ** (-1 / 1.35)                              # Salpeter-like
        _stars(image, cx + radius * np.cos(theta), cy + radius * np.sin(theta),
               fluxes / fluxes.max() * rng.uniform(2, 20), sigma_px=rng.uniform(0.6, 1.0))
    return image / (image.max() + 1e-12)


def render_scene(label: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Relative surface brightness (max 1) of a scene of class ``label`` on ``shape``, with field
    stars and background galaxies."""
    image = _galaxy(shape, rng) if HST_LABELS[label] == "galaxy" else _nebula_cluster(shape, rng)
    h, w = shape
    n_field = int(rng.integers(5, 60))
    _stars(image, rng.uniform(0, w, n_field), rng.uniform(0, h, n_field),
           rng.uniform(0.05, 2.0, n_field), sigma_px=0.7)
    return image


def raw_frame(scene_binned: np.ndarray, binning: int, exposure_time_s: float, rng: np.random.Generator,
              geometry: RawGeometry = ACS_WFC) -> np.ndarray:
    """A raw chip extension (DN, float32 holding uint16 values) from a binned scene in e-/s."""
    h, w = geometry.exposed
    if scene_binned.shape != (h // binning, w // binning):
        raise ValueError(f"scene {scene_binned.shape} does not match {(h // binning, w // binning)} at binning {binning}")
    # Spread each binned pixel evenly over its binning x binning raw pixels.
    electrons = np.repeat(np.repeat(scene_binned, binning, axis=0), binning, axis=1) / binning**2 * exposure_time_s
    sky = rng.uniform(20.0, 120.0)
    electrons = rng.poisson(np.clip(electrons + sky, 0, None)).astype(np.float32)
    # Cosmic rays, full resolution.
    n_hits = int(rng.uniform(0.002, 0.01) * h * w / 8 * exposure_time_s / 1000)
    ys = rng.integers(0, h, n_hits)
    xs = rng.integers(0, w, n_hits)
    energies = rng.uniform(200, 5000, n_hits).astype(np.float32)
    electrons[ys, xs] += energies
    long_tracks = rng.random(n_hits) < 0.15
    for y, x, e in zip(ys[long_tracks], xs[long_tracks], energies[long_tracks], strict=True):
        length = int(rng.integers(3, 30))
        angle = rng.uniform(0, np.pi)
        ty = np.clip((y + np.arange(length) * np.sin(angle)).astype(int), 0, h - 1)
        tx = np.clip((x + np.arange(length) * np.cos(angle)).astype(int), 0, w - 1)
        electrons[ty, tx] += e * rng.uniform(0.3, 1.0)
    # Hot pixels.
    n_hot = int(rng.integers(50, 300))
    electrons[rng.integers(0, h, n_hot), rng.integers(0, w, n_hot)] += rng.uniform(100, 3000, n_hot).astype(np.float32)
    raw = np.empty((geometry.rows, geometry.columns), dtype=np.float32)
    rows, cols = geometry.exposed_slices()
    raw[:] = 0.0
    raw[rows, cols] = electrons / GAIN_E_PER_DN
    # Bias per amplifier (left / right halves of the serial register) with row jitter; read noise everywhere.
    half = geometry.columns // 2
    for side in (slice(0, half), slice(half, geometry.columns)):
        bias = rng.uniform(2000, 2600) + rng.normal(0, 0.5, size=(geometry.rows, 1))
        raw[:, side] += bias.astype(np.float32)
    raw += rng.normal(0, READ_NOISE_E / GAIN_E_PER_DN, size=raw.shape).astype(np.float32)
    return np.clip(np.round(raw), 0, FULL_WELL_DN).astype(np.float32)


def generate(bodies_per_class: int, views_per_body: int, seed: int, binning: int = 4,
             chips: dict[int, RawGeometry] | None = None) -> list[HstFrame]:
    """Raw frames: ``bodies_per_class`` bodies of each class, ``views_per_body`` views each,
    each view on a chip drawn from ``chips`` (default: chip 2 only, ``ACS_WFC``). A raw chip is
    34 MB: for more than a few frames use :func:`iter_frames`."""
    return list(iter_frames(bodies_per_class, views_per_body, seed, binning, chips))


def iter_frames(bodies_per_class: int, views_per_body: int, seed: int, binning: int = 4,
                chips: dict[int, RawGeometry] | None = None) -> Iterator[HstFrame]:
    """The frames of :func:`generate`, one at a time (same seed, same frames)."""
    chips = chips or {2: ACS_WFC}
    chip_numbers = sorted(chips)
    rng = np.random.default_rng(seed)
    h, w = ACS_WFC.exposed
    for label in range(len(HST_LABELS)):
        for body in range(bodies_per_class):
            body_seed = int(rng.integers(0, 2**31))
            for _ in range(views_per_body):
                # Same body (same random draws for its structure), a different pointing / rotation.
                scene = render_scene(label, (h // binning, w // binning), np.random.default_rng(body_seed))
                scene = np.rot90(scene, k=2 * int(rng.integers(0, 2)))
                if rng.random() < 0.5:
                    scene = scene[:, ::-1]
                shift = (int(rng.integers(-h // binning // 4, h // binning // 4)),
                         int(rng.integers(-w // binning // 4, w // binning // 4)))
                scene = np.roll(scene, shift, axis=(0, 1))
                exposure_time = float(rng.uniform(300, 1500))
                brightness = rng.uniform(0.2, 5.0)   # peak e-/s per binned raw pixel
                chip = int(chip_numbers[int(rng.integers(0, len(chip_numbers)))])
                raw = raw_frame(np.ascontiguousarray(scene) * brightness * binning**2, binning, exposure_time,
                                rng, chips[chip])
                yield HstFrame(raw=raw, label=label, body=f"{HST_LABELS[label]}-{seed}-{body}",
                               exposure_time_s=exposure_time, chip=chip)
