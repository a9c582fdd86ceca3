"""Per-model input transforms, written once in torch so the same code runs on CUDA and the CPU.

Pure functions from :mod:`schemas.alert` objects to batched tensors; no Kafka, Redis or backend
imports. Host arrays are gathered into one (pinned, on CUDA) host tensor and copied with
``non_blocking=True``; everything after the copy is batched tensor arithmetic on the device.

Difference-alert stamps (real/bogus), per stamp and channel:
1. frame: stamps smaller than the 63 x 63 frame (cut at the detector edge) are centred in it,
   bigger ones centre-cropped; pixels outside the stamp count as missing;
2. NaN handling: missing and non-finite pixels take the stamp's median of finite pixels (the
   lower median, ``torch.nanmedian``'s definition), i.e. the background; all-missing -> 0;
3. per-stamp normalisation: min-max to [0, 1] (the paper's input scaling); constant -> 0;
4. resampling: bilinear (``align_corners=False``, no antialiasing), 63 -> 69;
5. channels stacked: (science, template, difference).

Multi-band cutouts (IICnet, W1 / W2 / W3), per cutout (:func:`fill_and_stretch_shared`):
1. NaN handling as for stamps: missing and non-finite pixels take the band's lower median of
   finite pixels; an all-missing band -> 0;
2. background: each band's median is subtracted (so filled pixels sit at 0);
3. ONE scale for all bands of the cutout: the robust noise of the reference band (W1),
   1.4826 x the lower median of its finite |pixel - median|; where that is 0 (constant or
   mostly identical pixels) the largest |pixel| of the cutout; an all-zero cutout uses 1;
4. resampling of the linear, scaled flux: bilinear (``align_corners=False``) to 80 x 80;
5. stretch: ``asinh`` (Lupton et al. 1999), linear within the noise, logarithmic above it, so
   bright sources do not swamp the input and the output grows only as log(flux / noise).
Why one shared scale: the classes differ in *colour* (quasars W1-W2 >~ 0.8 mag, stars ~ 0,
star-forming galaxies red in W2-W3). A colour is a ratio of band
fluxes; min-max scaling each band separately divides each by its own peak and erases it.
With one divisor per cutout the ratios survive, and after the asinh stretch they appear as
differences between channels (asinh(a f) - asinh(f) -> ln a for bright pixels).

Raw HST frames (HR-CelestialNet), following the paper's Sec. 2.2: each
CCD extension is trimmed of pre-/overscan, its amplifier halves merged, giving 2048 x 4096 per
chip; each chip is a network input (``raw_exposure_items`` keeps an exposure's chips in one
row, and the runner averages their scores); scaled by 1/65535 (16-bit data numbers); optionally binned
(mean over ``binning`` x ``binning`` blocks) for the reduced-resolution network.

Rubin difference-alert triplets (``rubin_triplet_69``, :func:`rubin_triplet_batch`), at Rubin's
own pixel scale (0.2"; no resampling), flux in nJy, per alert:
1. geometry: each cutout as it comes (30..74 px, odd or even). Rubin centres a cutout of n
   pixels on the source at index ``(n + 1) // 2`` (checked against diaSource x - CUTMINX on
   real packets); that pixel goes to the frame's centre (34 of 69). Cutouts bigger than the
   frame (or than ``window``) are cropped around it, smaller ones padded with 0 (= background);
2. orientation: the three cutouts of an alert must share one WCS linear matrix (CD, or PC x
   CDELT): a triplet whose matrices differ (not on one pixel grid) is refused
   (:func:`rubin_orientation`; APPLIES gives it no score). Parity is made one: a cutout
   whose matrix has a positive determinant (mirrored sky) is flipped left-right so all have
   the usual sky parity (det < 0, east left of north). Rotation is *not* undone: that needs
   resampling by an arbitrary angle, which smears the sharpest bogus (cosmic rays), and
   real/bogus does not depend on the direction on the sky (training rotates and mirrors);
3. flux: per cutout the lower median of finite pixels is the background, subtracted; missing
   (NaN) pixels take it, i.e. become 0 like Rubin's own model (NaN -> 0); then ONE scale per
   alert: the robust noise of the *difference* (1.4826 x MAD), so science - template =
   difference relations survive in units of the difference noise; then ``asinh`` (linear in the
   noise, logarithmic for bright stars). A blank or all-NaN triplet gives zeros, never NaN/inf
   (scale falls back to the cutout's largest |pixel|, then 1; see :func:`fill_and_stretch_shared`);
4. channels (science, template, difference) in a 69 x 69 frame, the seed network's input.

**Masked-pixel sentinels.** ZTF writes -3.4e38 (float32's lowest) where a pixel is masked (6 of
the 236 ZTF packets in ../shared/data and the bundled samples). Our own stretches (min-max,
shared asinh) count any pixel at or beyond :data:`SENTINEL_ABS` as missing, like NaN: left in,
one such pixel made alertclass's input NaN and squashed a min-max stamp to a constant. The
imported ZTF models below keep ZTF's own handling (the sentinel stays), since their purpose is
to reproduce ZTF's scores (braai is `drb` bit for bit, sentinel stamps included); so does the
realbogus model that reads braai's input.

ZTF production models imported from Keras (braai, ACAI), exactly as their authors prepared
inputs, so the scores match theirs bit for bit (see :mod:`engines.networks.acai`):
1. per cutout: NaN -> 0 (``np.nan_to_num``), then the model's normalisation: braai ``d6_m7``
   (the ``drb`` in ZTF alerts) divides each image *row* by its L2 norm (all-zero rows left as
   they are; ``tf.keras.utils.normalize``); braai ``d6_m9`` and ACAI divide the whole cutout by
   its L2 norm; a cutout bigger than 63 x 63 is centre-cropped first;
2. cutouts cut at the detector edge are padded at the bottom/right with 1e-9 to 63 x 63, after
   normalising (not centred like our own stamps: the models were trained this way);
3. channels (science, template, difference), channels-first (3, 63, 63).
ACAI's second input is 25 raw ``candidate`` values in :data:`ACAI_FEATURES` order, unscaled.
An alert lacking any of them but ``drb`` has no ACAI input (:func:`acai_missing_features`);
a missing ``drb`` goes in as NaN, which the ACAI graph replaces with braai d6_m9's score on
the same triplet, as ACAI's training code did.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.networks.alertclass import REFERENCE_SOURCE_FIELDS
from schemas.alert import Alert, Exposure

__all__ = [
    "PreprocessError",
    "STAMP_FRAME",
    "WISE_BANDS",
    "RAW_CHIP_SHAPE",
    "frame_stamp",
    "to_device",
    "known_solar_system",
    "stamps_with_solar_system",
    "reference_source_applies",
    "reference_source_features",
    "stamps_with_reference_source",
    "fill_and_normalise",
    "fill_and_stretch_shared",
    "resample",
    "difference_alert_batch",
    "multiband_batch",
    "raw_chips",
    "raw_exposure_batch",
    "raw_exposure_items",
    "ACAI_FEATURES",
    "APPLIES",
    "acai_applies",
    "ztf_triplet",
    "ztf_triplet_batch",
    "acai_features",
    "acai_missing_features",
    "acai_batch",
    "SURVEY_PIXEL_SCALES",
    "difference_alert_batch_by_scale",
    "difference_alert_batch_rownorm",
    "difference_alert_batch_rownorm_padded",
    "RUBIN_FRAME",
    "rubin_cutout_centre",
    "rubin_orientation",
    "rubin_applies",
    "rubin_triplet_batch",
    "PREPROCESSORS",
]

STAMP_FRAME = 63
#: 1.4826 x MAD estimates a Gaussian sigma
MAD_TO_SIGMA = 1.4826
#: a pixel at or beyond this magnitude is a masked-pixel sentinel (ZTF: -3.4e38, near float32's lowest), missing like NaN;
#: huge but representable values (the Rubin edge cases' 1e31) stay pixels
SENTINEL_ABS = 3e38
WISE_BANDS: tuple[str, ...] = ("W1", "W2", "W3")
RAW_CHIP_SHAPE: tuple[int, int] = (2048, 4096)
_DN_SCALE = 65535.0


class PreprocessError(ValueError):
    """An input cannot be turned into a network input (wrong kind, missing band, bad geometry)."""


def frame_stamp(data: np.ndarray, frame: int = STAMP_FRAME, *, position_px: tuple[float, float] | None = None,
                detector_shape: tuple[int, int] | None = None) -> np.ndarray:
    """``data`` in a ``frame`` x ``frame`` float32 array; outside pixels are NaN.

    Stamps that fit use the decoder's :func:`schemas.decode.stamps.place_in_frame`: a stamp cut
    at the detector edge keeps its pixels on the side away from the edge, decided from the
    candidate's detector position (``position_px`` with ``detector_shape``), else centred.
    Bigger ones (Rubin cutouts vary in size) are centre-cropped first.
    """
    from schemas.decode.errors import DecodeError
    from schemas.decode.stamps import place_in_frame

    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 2:
        raise PreprocessError(f"stamp must be 2-D, got shape {data.shape}")
    h, w = data.shape
    top, left = max((h - frame) // 2, 0), max((w - frame) // 2, 0)
    cropped = data[top:top + frame, left:left + frame]
    try:
        xpos, ypos = position_px if (position_px is not None and detector_shape is not None) else (None, None)
        framed, _mask = place_in_frame(cropped, (frame, frame), xpos=xpos, ypos=ypos, detector_shape=detector_shape)
    except DecodeError as exc:
        raise PreprocessError(f"stamp of shape {data.shape} cannot be framed: {exc}") from exc
    return framed


def to_device(host: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Host tensor -> ``device``; on CUDA via pinned memory and a non-blocking copy."""
    device = torch.device(device)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def fill_and_normalise(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) with NaN/inf/sentinels (:data:`SENTINEL_ABS`) for missing pixels -> median-filled, min-max scaled to [0, 1].

    The median (the costly part) is computed only for the planes that miss pixels; complete
    planes, most of a night's stamps, go straight to the min-max scaling.
    """
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h * w).float()
    finite = flat.abs() < SENTINEL_ABS  # False for NaN, inf and sentinels alike
    incomplete = ~finite.all(dim=1)
    if bool(incomplete.any()):
        rows, rows_finite = flat[incomplete], finite[incomplete]
        median = torch.nanmedian(torch.where(rows_finite, rows, torch.full_like(rows, float("nan"))), dim=1).values
        median = torch.nan_to_num(median, nan=0.0).unsqueeze(-1)       # all missing -> 0
        flat = flat.clone() if flat.data_ptr() == x.data_ptr() else flat
        flat[incomplete] = torch.where(rows_finite, rows, median)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    constant = span <= 0
    scaled = (flat - low) / span.masked_fill(constant, 1.0)
    return scaled.masked_fill_(constant, 0.0).reshape(n, c, h, w)


def _shared_scale(centred: torch.Tensor, finite: torch.Tensor, reference_band: int) -> torch.Tensor:
    """(N, C, P) background-subtracted planes -> (N, 1, 1) divisor, one per cutout (step 3)."""
    reference = torch.where(finite[:, reference_band], centred[:, reference_band].abs(),
                            torch.full_like(centred[:, reference_band], float("nan")))
    noise = MAD_TO_SIGMA * torch.nan_to_num(torch.nanmedian(reference, dim=1).values, nan=0.0)
    peak = centred.abs().amax(dim=(1, 2))
    scale = torch.where(noise > 0, noise, torch.where(peak > 0, peak, torch.ones_like(peak)))
    return scale.reshape(-1, 1, 1)


def fill_and_stretch_shared(x: torch.Tensor, size: int | None = None, reference_band: int = 0) -> torch.Tensor:
    """(N, C, H, W) band images with NaN/inf/sentinels for missing pixels -> colour-preserving network input.

    Per band: missing pixels take the lower median of finite ones, and that median is
    subtracted; then every band of one cutout is divided by the same scale (the robust noise of
    band ``reference_band``), resampled to ``size`` (if given) and asinh-stretched. Band flux
    ratios (colours) survive, unlike :func:`fill_and_normalise`; see the module docstring.
    """
    n, c, h, w = x.shape
    if not 0 <= reference_band < c:
        raise PreprocessError(f"reference band {reference_band} not in 0..{c - 1}")
    flat = x.reshape(n, c, h * w).float()
    finite = flat.abs() < SENTINEL_ABS  # False for NaN, inf and sentinels alike
    flat = torch.where(finite, flat, torch.full_like(flat, float("nan")))
    median = torch.nan_to_num(torch.nanmedian(flat, dim=2).values, nan=0.0).unsqueeze(-1)
    centred = torch.where(finite, flat - median, torch.zeros_like(flat))
    scaled = (centred / _shared_scale(centred, finite, reference_band)).reshape(n, c, h, w)
    if size is not None:
        scaled = resample(scaled, size)
    return torch.asinh(scaled)


def resample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) to ``size`` x ``size`` (align_corners=False)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def _host_batch(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames).astype(np.float32, copy=False))


def difference_alert_batch(alerts: Sequence[Alert], size: int = 69, device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, 3, size, size): (science, template, difference) per alert, framed, filled, scaled, resampled.

    Stamps of the frame's own size (nearly all) are copied straight into one host buffer; only
    edge and oversized stamps go through :func:`frame_stamp`.
    """
    host = np.empty((len(alerts), 3, STAMP_FRAME, STAMP_FRAME), dtype=np.float32)
    for i, alert in enumerate(alerts):
        if not isinstance(alert, Alert):
            raise PreprocessError(f"expected an Alert, got {type(alert).__name__}")
        for j, stamp in enumerate((alert.science, alert.template, alert.difference)):
            data = stamp.data
            if data.shape == (STAMP_FRAME, STAMP_FRAME):
                host[i, j] = data
            else:
                host[i, j] = frame_stamp(np.asarray(data), position_px=alert.position_px, detector_shape=alert.detector_shape)
    if not len(alerts):
        return torch.empty((0, 3, size, size), device=device)
    x = to_device(torch.from_numpy(host), device)
    return resample(fill_and_normalise(x), size)


def multiband_batch(
    exposures: Sequence[Exposure], size: int = 80, bands: Sequence[str] = WISE_BANDS, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """(N, len(bands), size, size) from multi-band cutouts (images keyed by band name).

    Colour-preserving: background-subtracted bands share one scale per cutout (the first
    band's robust noise) before an asinh stretch (:func:`fill_and_stretch_shared`), so the
    band flux ratios the classes differ by reach the network. Bands of one cutout must share a
    shape; cutouts of different shapes are processed in same-shape groups (batched per group)
    and returned in input order.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    arrays: list[np.ndarray] = []
    for index, exposure in enumerate(exposures):
        if not isinstance(exposure, Exposure):
            raise PreprocessError(f"expected an Exposure, got {type(exposure).__name__}")
        missing = [b for b in bands if b not in exposure.images]
        if missing:
            raise PreprocessError(f"exposure {exposure.exposure_id}: missing bands {missing} (has {sorted(exposure.images)})")
        planes = [np.asarray(exposure.images[b], dtype=np.float32) for b in bands]
        shape = planes[0].shape
        if len(shape) != 2 or any(p.shape != shape for p in planes):
            raise PreprocessError(f"exposure {exposure.exposure_id}: band images differ in shape or are not 2-D")
        arrays.append(np.stack(planes))
        groups.setdefault(shape, []).append(index)
    out = torch.empty((len(arrays), len(bands), size, size), device=device)
    for indices in groups.values():
        x = to_device(torch.from_numpy(np.stack([arrays[i] for i in indices])), device)
        out[torch.as_tensor(indices, device=device)] = fill_and_stretch_shared(x, size)
    return out


# --- raw HST frames -----------------------------------------------------------------------

#: instrument -> raw extension shape (rows, columns), from the paper's Sec. 2.2 geometry.
RAW_GEOMETRY: dict[str, tuple[int, int]] = {"ACS/WFC": (2068, 4144), "WFC3/UVIS": (2070, 4206)}


def _chip_number(name: str, header: Mapping[str, Any]) -> int:
    """CCD chip (1 or 2) of a SCI extension: header CCDCHIP, else the HST convention that
    [SCI,1] is chip 2 (WFC2 / UVIS2) and [SCI,2] is chip 1."""
    if "CCDCHIP" in header:
        return int(header["CCDCHIP"])
    extver = int(name.split(",")[1]) if "," in name else int(header.get("EXTVER", 1))
    return 2 if extver == 1 else 1


def _trim_chip(raw: torch.Tensor, instrument: str, chip: int) -> torch.Tensor:
    """One raw extension (rows, cols) -> the 2048 x 4096 imaging area, amplifier halves merged."""
    if instrument == "ACS/WFC":
        # 24-column physical prescan on both sides; 20-row virtual overscan at the bottom of
        # WFC1 and the top of WFC2. The two amplifier halves are then contiguous.
        cols = raw[:, 24:-24]
        return cols[20:, :] if chip == 1 else cols[:-20, :]
    if instrument == "WFC3/UVIS":
        # 25-column physical overscan on both sides, 60 columns of virtual overscan between the
        # amplifier halves (merged here), 19-row virtual overscan, then 3 more rows: bottom of
        # UVIS1, top of UVIS2, to reach 2048 rows.
        merged = torch.cat((raw[:, 25:25 + 2048], raw[:, 25 + 2048 + 60:25 + 2048 + 60 + 2048]), dim=1)
        return merged[19 + 3:, :] if chip == 1 else merged[:-(19 + 3), :]
    raise PreprocessError(f"no raw geometry for instrument {instrument!r} (known: {sorted(RAW_GEOMETRY)})")


def _sci_extensions(exposure: Exposure) -> list[str]:
    names = sorted(n for n in exposure.images if n.upper().startswith("SCI"))
    if not names:
        raise PreprocessError(f"exposure {exposure.exposure_id}: no SCI extensions (has {sorted(exposure.images)})")
    return names


def raw_chips(exposure: Exposure, device: str | torch.device = "cpu") -> torch.Tensor:
    """(n_chips, 2048, 4096) trimmed, merged chips of one raw exposure, in chip order 1, 2."""
    geometry = RAW_GEOMETRY.get(exposure.instrument)
    if geometry is None:
        raise PreprocessError(f"exposure {exposure.exposure_id}: unsupported instrument {exposure.instrument!r}")
    chips = []
    for name in _sci_extensions(exposure):
        data = np.asarray(exposure.images[name])
        if data.shape != geometry:
            raise PreprocessError(f"exposure {exposure.exposure_id} {name}: raw shape {data.shape}, expected {geometry} for {exposure.instrument}")
        chip = _chip_number(name, exposure.headers.get(name, {}))
        raw = to_device(torch.from_numpy(data.astype(np.float32, copy=False)), device)
        chips.append((chip, _trim_chip(raw, exposure.instrument, chip)))
    chips.sort(key=lambda pair: pair[0])
    return torch.stack([c for _, c in chips])


def raw_exposure_batch(exposures: Sequence[Exposure], binning: int = 1, device: str | torch.device = "cpu") -> torch.Tensor:
    """(total chips, 1, 2048 / binning, 4096 / binning): scaled, NaN -> 0, binned by block mean."""
    planes = []
    for exposure in exposures:
        if not isinstance(exposure, Exposure):
            raise PreprocessError(f"expected an Exposure, got {type(exposure).__name__}")
        planes.append(raw_chips(exposure, device))
    h, w = RAW_CHIP_SHAPE
    if not planes:
        return torch.empty((0, 1, h // binning, w // binning), device=device)
    x = torch.cat(planes).unsqueeze(1)
    x = torch.nan_to_num(x / _DN_SCALE, nan=0.0, posinf=0.0, neginf=0.0)
    if binning > 1:
        x = F.avg_pool2d(x, binning)
    return x


def raw_exposure_items(exposures: Sequence[Exposure], binning: int = 1, device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, chips, 2048 / binning, 4096 / binning): one row per exposure, its chips side by side
    (the runner scores each chip and averages). Exposures with fewer chips than the most in the
    batch repeat theirs cyclically, which keeps the average exact for 1 and 2 chips."""
    per_item = [raw_exposure_batch([e], binning, device)[:, 0] for e in exposures]
    h, w = RAW_CHIP_SHAPE
    if not per_item:
        return torch.empty((0, 1, h // binning, w // binning), device=device)
    most = max(p.shape[0] for p in per_item)
    return torch.stack([p[torch.arange(most, device=p.device) % p.shape[0]] for p in per_item])


# --- braai and ACAI (ZTF production models) ----------------------------------------------

#: ACAI's 25 features, raw ``candidate`` values in model order (acai config ``features: "20201130"``).
ACAI_FEATURES: tuple[str, ...] = (
    "drb", "diffmaglim", "ra", "dec", "magpsf", "sigmapsf", "chipsf", "fwhm", "sky", "chinr", "sharpnr",
    "sgscore1", "distpsnr1", "sgscore2", "distpsnr2", "sgscore3", "distpsnr3", "ndethist", "ncovhist",
    "scorr", "nmtchps", "clrcoeff", "clrcounc", "neargaia", "neargaiabright",
)
ZTF_TRIPLET_FRAME = 63
_PAD_VALUE = 1e-9


def _normalise_cutout(data: np.ndarray, row_wise: bool) -> np.ndarray:
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    h, w = data.shape
    top, left = max((h - ZTF_TRIPLET_FRAME) // 2, 0), max((w - ZTF_TRIPLET_FRAME) // 2, 0)
    data = data[top:top + ZTF_TRIPLET_FRAME, left:left + ZTF_TRIPLET_FRAME]
    # float32 like the originals: a cutout whose squares overflow gets an infinite norm and
    # becomes zeros, exactly as it did for them (so no overflow warnings either)
    with np.errstate(over="ignore", invalid="ignore"):
        if row_wise:
            norms = np.linalg.norm(data, axis=-1, keepdims=True)
            norms[norms == 0] = 1
        else:
            norms = np.linalg.norm(data)
            norms = norms if norms != 0 else 1
        data = data / norms
    h, w = data.shape
    return np.pad(data, [(0, ZTF_TRIPLET_FRAME - h), (0, ZTF_TRIPLET_FRAME - w)], mode="constant", constant_values=_PAD_VALUE)


def ztf_triplet(alert: Alert, row_wise: bool) -> np.ndarray:
    """(3, 63, 63) float32 braai/ACAI input of one alert (see the module docstring)."""
    if not isinstance(alert, Alert):
        raise PreprocessError(f"expected an Alert, got {type(alert).__name__}")
    planes = []
    for stamp in (alert.science, alert.template, alert.difference):
        data = np.asarray(stamp.data)
        if data.ndim != 2 or 0 in data.shape:
            raise PreprocessError(f"alert {alert.alert_id}: cutout of shape {data.shape}")
        planes.append(_normalise_cutout(data, row_wise))
    return np.stack(planes).astype(np.float32, copy=False)


def _normalised_block(block: np.ndarray, row_wise: bool) -> np.ndarray:
    """(K, 3, H, W) float32 triplets of one shape -> normalised (K, 3, min(H, 63), min(W, 63)).

    The same float32 operations per cutout as :func:`_normalise_cutout` (centre crop, NaN -> 0,
    row norms by the same reduction, a cutout's norm by the same ``dot``), so every cutout comes
    out identical bit for bit; only the Python loop over alerts is gone.
    """
    frame = ZTF_TRIPLET_FRAME
    h, w = block.shape[-2:]
    top, left = max((h - frame) // 2, 0), max((w - frame) // 2, 0)
    block = np.nan_to_num(np.ascontiguousarray(block[..., top:top + frame, left:left + frame]), copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        if row_wise:
            norms = np.linalg.norm(block, axis=-1, keepdims=True)
            norms[norms == 0] = 1
        else:
            planes = block.reshape(-1, block.shape[-2] * block.shape[-1])
            norms = np.sqrt(np.array([plane.dot(plane) for plane in planes], dtype=np.float32))
            norms[norms == 0] = 1
            norms = norms.reshape(-1, 3, 1, 1)
        return np.divide(block, norms, out=block)


def _triplet_shape(alert: Alert) -> tuple[int, int] | None:
    """The shared 2-D shape of an alert's three cutouts, or None (shapes differ, or a cutout is empty)."""
    shapes = {np.shape(stamp.data) for stamp in (alert.science, alert.template, alert.difference)}
    if len(shapes) != 1:
        return None
    (shape,) = shapes
    return shape if len(shape) == 2 and 0 not in shape else None


def ztf_triplet_batch(alerts: Sequence[Alert], row_wise: bool, device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, 3, 63, 63): braai ``d6_m7`` (``row_wise``) or ``d6_m9`` / ACAI (whole-cutout) input.

    Alerts are grouped by cutout shape (ZTF's 63 x 63, nearly all; cut at the detector edge;
    a Rubin size) and each group is normalised as one block (:func:`_normalised_block`), bit
    for bit what :func:`ztf_triplet` gives one alert; an alert whose three cutouts differ in
    shape goes through :func:`ztf_triplet` on its own.
    """
    n, frame = len(alerts), ZTF_TRIPLET_FRAME
    if not n:
        return torch.empty((0, 3, frame, frame), device=device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, alert in enumerate(alerts):
        if not isinstance(alert, Alert):
            raise PreprocessError(f"expected an Alert, got {type(alert).__name__}")
        groups.setdefault(_triplet_shape(alert) or (0, 0), []).append(i)
    host = np.empty((n, 3, frame, frame), dtype=np.float32)
    for shape, members in groups.items():
        if shape == (0, 0):
            for i in members:
                host[i] = ztf_triplet(alerts[i], row_wise)
            continue
        block = np.empty((len(members), 3, *shape), dtype=np.float32)
        for k, i in enumerate(members):
            alert = alerts[i]
            block[k, 0], block[k, 1], block[k, 2] = alert.science.data, alert.template.data, alert.difference.data
        normalised = _normalised_block(block, row_wise)
        h, w = normalised.shape[-2:]
        if (h, w) == (frame, frame) and len(members) == n:
            host = normalised
            break
        if (h, w) != (frame, frame):
            normalised = np.pad(normalised, [(0, 0), (0, 0), (0, frame - h), (0, frame - w)], mode="constant",
                                constant_values=_PAD_VALUE)
        host[members] = normalised
    return to_device(torch.from_numpy(host), device)


def _feature_value(candidate: Mapping[str, Any], name: str) -> float | None:
    value = candidate.get(name)
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _drb_missing(alert: Alert) -> bool:
    """No usable ``drb``: absent, null, non-finite, or the 0.0 placeholder some re-written
    packets carry with an empty ``drbversion``."""
    drb = _feature_value(alert.candidate, "drb")
    if drb is None:
        return True
    version = alert.candidate.get("drbversion")
    return drb == 0.0 and (version is None or str(version).strip() == "")


def acai_missing_features(alert: Alert) -> list[str]:
    """ACAI features this alert lacks, ``drb`` excepted (it is filled from braai d6_m9)."""
    return [name for name in ACAI_FEATURES[1:] if _feature_value(alert.candidate, name) is None]


def acai_features(alert: Alert) -> np.ndarray:
    """(25,) float32 raw features in :data:`ACAI_FEATURES` order; ``drb`` is NaN when missing
    (the ACAI graph fills it). Raises PreprocessError when any other feature is missing."""
    candidate = alert.candidate
    values = [_feature_value(candidate, name) for name in ACAI_FEATURES]  # each read once
    missing = [name for name, value in zip(ACAI_FEATURES[1:], values[1:]) if value is None]
    if missing:
        raise PreprocessError(f"alert {alert.alert_id}: ACAI features missing: {missing}")
    if _drb_missing(alert):
        values[0] = float("nan")
    return np.asarray(values, dtype=np.float32)


def acai_batch(alerts: Sequence[Alert], device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(triplets (N, 3, 63, 63) whole-cutout normalised, features (N, 25)) for ACAI."""
    features = np.stack([acai_features(a) for a in alerts]) if alerts else np.empty((0, len(ACAI_FEATURES)), np.float32)
    return ztf_triplet_batch(alerts, False, device), to_device(torch.from_numpy(features), device)


def acai_applies(alert: Alert) -> bool:
    """Whether ACAI can score this alert (every feature but ``drb`` present)."""
    return not acai_missing_features(alert)


#: preprocessing name -> predicate(item) -> bool: which items the model can score at all (an
#: item it cannot score gets no score from it, never a made-up one). Absent: every item.
APPLIES: dict[str, Any] = {
    "acai_d1_20201130": lambda item: isinstance(item, Alert) and acai_applies(item),
}

#: arcsec per pixel of each survey's cutouts (ZTF: 1.01; Rubin LSSTCam: 0.2)
SURVEY_PIXEL_SCALES: dict[str, float] = {"ztf": 1.01, "rubin": 0.2}


def difference_alert_batch_by_scale(alerts: Sequence[Alert], size: int = STAMP_FRAME, arcsec_per_px: float = 1.01,
                                    device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, 3, size, size) stamps of any survey on one sky grid of ``arcsec_per_px``.

    Each stamp is first resampled by the ratio of its survey's pixel scale
    (:data:`SURVEY_PIXEL_SCALES`) to ``arcsec_per_px``: missing pixels take the stamp's median,
    then bilinear with antialiasing (an area average when shrinking), so a 30 x 30 Rubin stamp
    at 0.2 arcsec per pixel becomes 6 x 6 at ZTF's 1.01. Then as for real/bogus: framed in
    ``size`` x ``size`` (NaN outside), filled, min-max scaled; no final resize. Stamps already
    at the target scale (ZTF) skip the first step and keep their detector-edge placement.
    """
    frames = []
    for alert in alerts:
        if not isinstance(alert, Alert):
            raise PreprocessError(f"expected an Alert, got {type(alert).__name__}")
        try:
            ratio = SURVEY_PIXEL_SCALES[alert.survey] / arcsec_per_px
        except KeyError:
            raise PreprocessError(f"no pixel scale known for survey {alert.survey!r}") from None
        planes = []
        for stamp in (alert.science, alert.template, alert.difference):
            data = np.asarray(stamp.data, dtype=np.float32)
            if abs(ratio - 1.0) <= 0.02:
                # a stamp that fills the frame (nearly every ZTF one) is its own framing
                planes.append(data if data.shape == (size, size) else
                              frame_stamp(data, size, position_px=alert.position_px, detector_shape=alert.detector_shape))
                continue
            with np.errstate(invalid="ignore"):
                finite = np.abs(data) < SENTINEL_ABS
            filled = np.where(finite, data, np.median(data[finite]) if finite.any() else 0.0).astype(np.float32)
            out_hw = (max(1, round(data.shape[0] * ratio)), max(1, round(data.shape[1] * ratio)))
            resized = F.interpolate(torch.from_numpy(filled)[None, None], size=out_hw, mode="bilinear",
                                    align_corners=False, antialias=ratio < 1)[0, 0].numpy()
            planes.append(frame_stamp(resized, size))
        frames.append(np.stack(planes))
    if not frames:
        return torch.empty((0, 3, size, size), device=device)
    return fill_and_normalise(to_device(_host_batch(frames), device))


def known_solar_system(alert: Alert) -> float:
    """1.0 when the packet places the alert on a known Solar-System object, else 0.0: the record's
    ``quality_flags.known_solar_system`` (:func:`schemas.quality.quality_fields`; ZTF: ``ssnamenr``
    set and 0 <= ``ssdistnr`` <= 5"; Rubin: a non-zero ``ssObjectId``). A catalogue fact (MPC),
    not a stamp inference; unknown counts as 0."""
    from schemas.quality import quality_fields

    fields = quality_fields(alert)
    return 1.0 if fields is not None and fields.get("known_solar_system") is True else 0.0


def stamps_with_solar_system(alerts: Sequence[Alert], device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(stamps (N, 3, 63, 63) on the 1.01"/px grid, known-Solar-System flag (N, 1)) for alertclass 2.x."""
    flags = np.asarray([[known_solar_system(a)] for a in alerts], dtype=np.float32).reshape(len(alerts), 1)
    return difference_alert_batch_by_scale(alerts, 63, 1.01, device), to_device(torch.from_numpy(flags), device)


#: reference-source fields that are positive in every real packet (a distance, a magnitude, its
#: error, a chi); zero or below is a placeholder or a sentinel such as ZTF's -999
_POSITIVE_REFERENCE_FIELDS = frozenset({"distnr", "magnr", "sigmagnr", "chinr"})


def _reference_source_values(alert: Alert) -> tuple[list[float], list[str]]:
    """(the :data:`REFERENCE_SOURCE_FIELDS` values, the names of those missing or not usable:
    absent, null, non-finite, a float sentinel, or not positive where a real value always is)."""
    values, bad = [], []
    for name in REFERENCE_SOURCE_FIELDS:
        value = _feature_value(alert.candidate, name)
        if value is None or abs(value) >= SENTINEL_ABS or (name in _POSITIVE_REFERENCE_FIELDS and value <= 0):
            bad.append(name)
            value = float("nan")
        values.append(value)
    return values, bad


def reference_source_applies(alert: Any) -> bool:
    """Whether the packet gives the nearest reference-image source (every field of
    :data:`REFERENCE_SOURCE_FIELDS`, finite, not a sentinel, positive where a real value is):
    ZTF does for a source within 30" of the alert in its reference's PSF catalogue, and leaves
    them null otherwise. Without them alertclass 3.x gives no score: every pool alert it was
    checked on had them."""
    return isinstance(alert, Alert) and not _reference_source_values(alert)[1]


def reference_source_features(alert: Alert) -> np.ndarray:
    """(6,) float32: the known-Solar-System flag, then :data:`REFERENCE_SOURCE_FIELDS` as the
    packet gives them (raw; the network takes logarithms and standardises). Raises
    PreprocessError when one is missing or not usable (:func:`reference_source_applies`)."""
    values, bad = _reference_source_values(alert)
    if bad:
        raise PreprocessError(f"alert {alert.alert_id}: reference-source fields missing or not usable: {bad}")
    return np.asarray([known_solar_system(alert), *values], dtype=np.float32)


def stamps_with_reference_source(alerts: Sequence[Alert], device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(stamps (N, 3, 63, 63) on the 1.01"/px grid, (flag, reference-source fields) (N, 6)) for alertclass 3.x."""
    width = 1 + len(REFERENCE_SOURCE_FIELDS)
    features = np.stack([reference_source_features(a) for a in alerts]) if alerts else np.empty((0, width), np.float32)
    return difference_alert_batch_by_scale(alerts, 63, 1.01, device), to_device(torch.from_numpy(features), device)


def difference_alert_batch_rownorm(alerts: Sequence[Alert], size: int = 69, device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, 3, size, size): braai ``d6_m7``'s own input (row-wise L2, see :func:`ztf_triplet`),
    resampled bilinearly 63 -> ``size``.

    For the real/bogus CNN distilled from braai: unlike the per-stamp min-max of
    :func:`difference_alert_batch`, a row-wise L2 keeps each row's profile relative to its
    own flux, and a network trained on it imitates braai on alert sources it never saw far
    better than on min-max stamps (see the realbogus report)."""
    return resample(ztf_triplet_batch(alerts, True, device), size)


def difference_alert_batch_rownorm_padded(alerts: Sequence[Alert], size: int = 69,
                                          device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, 3, size, size): braai ``d6_m7``'s own 63 x 63 input, pixel for pixel, centred in a
    ``size`` frame of zeros (3 px each side for 69): no resampling, so the network sees braai's
    exact pixels at ZTF's own 1.01"/px, and the seed CNN's 69 -> 35 -> 18 -> 9 geometry stays."""
    triplet = ztf_triplet_batch(alerts, True, device)
    pad = size - triplet.shape[-1]
    if pad < 0:
        raise PreprocessError(f"frame {size} is smaller than braai's {triplet.shape[-1]} px triplet")
    return F.pad(triplet, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))


# --- Rubin difference-alert triplets (at Rubin's own 0.2" pixels) ---------------------------

RUBIN_FRAME = 69
#: the three cutouts of one alert share one WCS when their linear matrices agree to this
#: fraction of the matrix's largest element (Rubin writes them identical; 1e-3 of a 0.2" pixel
#: matrix is a 0.06 degree turn or a 0.1 % scale change)
_WCS_AGREEMENT = 1e-3


def rubin_cutout_centre(n: int) -> int:
    """Index of the source pixel along an axis of ``n`` pixels in a Rubin cutout.

    Rubin's cutout service puts the source at ``(n + 1) // 2`` (diaSource x - CUTMINX lies in
    [15, 16) for n = 30, in [16, 16.5] for n = 31, 35.5 for n = 71 on the real packets)."""
    return (n + 1) // 2


def _wcs_matrix(header: Mapping[str, Any]) -> np.ndarray | None:
    """The FITS linear transform pixel -> intermediate world (CD, or CDELT x PC), or None."""
    if all(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2)):
        return np.array([[float(header[f"CD{i}_{j}"]) for j in (1, 2)] for i in (1, 2)])
    if any(f"PC{i}_{j}" in header for i in (1, 2) for j in (1, 2)) or "CDELT1" in header:
        pc = np.array([[float(header.get(f"PC{i}_{j}", 1.0 if i == j else 0.0)) for j in (1, 2)] for i in (1, 2)])
        cdelt = np.array([float(header.get("CDELT1", 1.0)), float(header.get("CDELT2", 1.0))])
        return cdelt[:, None] * pc
    return None


def rubin_orientation(alert: Alert) -> bool:
    """Whether ``alert``'s cutouts are to be mirrored left-right to the usual sky parity.

    The three cutouts must lie on one pixel grid: every cutout that carries a WCS must carry
    the same linear matrix (else PreprocessError: the triplet is not aligned and gets no score).
    Their parity is the sign of its determinant: negative is the sky as seen (east left of
    north, every real Rubin packet so far), positive a mirrored one, flipped here. Cutouts
    without any WCS are taken as they come (nothing to check them against)."""
    matrices = [m for m in (_wcs_matrix(s.header) for s in (alert.science, alert.template, alert.difference))
                if m is not None]
    if not matrices:
        return False
    reference = matrices[0]
    largest = float(np.abs(reference).max())
    det = float(np.linalg.det(reference))
    if not np.isfinite(det) or det == 0.0 or largest == 0.0:
        raise PreprocessError(f"alert {alert.alert_id}: degenerate cutout WCS matrix {reference.tolist()}")
    for other in matrices[1:]:
        if float(np.abs(other - reference).max()) > _WCS_AGREEMENT * largest:
            raise PreprocessError(f"alert {alert.alert_id}: science, template and difference cutouts differ in "
                                  "orientation or scale (their WCS matrices disagree)")
    return det > 0


def rubin_applies(item: Any) -> bool:
    """Whether :func:`rubin_triplet_batch` can take ``item``: a Rubin alert whose three cutouts
    are 2-D, share one shape and one orientation."""
    if not isinstance(item, Alert) or item.survey != "rubin" or _triplet_shape(item) is None:
        return False
    try:
        rubin_orientation(item)
    except PreprocessError:
        return False
    return True


def _rubin_window(n: int, length: int, frame: int) -> tuple[slice, slice]:
    """(source slice, frame slice) along one axis: ``length`` pixels around the source pixel,
    clipped to the cutout, landing with the source on the frame's centre."""
    centre, middle = rubin_cutout_centre(n), frame // 2
    low, high = max(0, centre - length // 2), min(n, centre - length // 2 + length)
    start = middle - (centre - low)
    return slice(low, high), slice(start, start + high - low)


def rubin_triplet_batch(alerts: Sequence[Alert], size: int = RUBIN_FRAME, window: int | None = None,
                        device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, 3, size, size): (science, template, difference) of Rubin alerts; see the module docstring.

    ``window`` (optional) keeps only the central ``window`` x ``window`` pixels of every cutout
    (statistics included), so cutouts of every size show the network the same patch of sky.
    Alerts are grouped by cutout shape; each group is one tensor computation (background,
    shared noise scale, asinh), placed in the frame, then the mirrored ones flipped."""
    frame = int(size)
    length = min(frame, int(window)) if window else frame
    out = torch.zeros((len(alerts), 3, frame, frame), device=device)
    groups: dict[tuple[int, int], list[int]] = {}
    flips = np.zeros(len(alerts), dtype=bool)
    for i, alert in enumerate(alerts):
        if not isinstance(alert, Alert):
            raise PreprocessError(f"expected an Alert, got {type(alert).__name__}")
        shape = _triplet_shape(alert)
        if shape is None:
            raise PreprocessError(f"alert {alert.alert_id}: cutouts must be 2-D and of one shape")
        flips[i] = rubin_orientation(alert)
        groups.setdefault(shape, []).append(i)
    for (h, w), members in groups.items():
        (rows, frame_rows), (cols, frame_cols) = _rubin_window(h, length, frame), _rubin_window(w, length, frame)
        block = np.empty((len(members), 3, rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
        for k, i in enumerate(members):
            alert = alerts[i]
            for j, stamp in enumerate((alert.science, alert.template, alert.difference)):
                block[k, j] = np.asarray(stamp.data)[rows, cols]
        scaled = fill_and_stretch_shared(to_device(torch.from_numpy(block), device), None, reference_band=2)
        out[torch.as_tensor(members, device=device), :, frame_rows, frame_cols] = scaled
    if flips.any():
        mirrored = torch.as_tensor(np.flatnonzero(flips), device=device)
        out[mirrored] = out[mirrored].flip(-1)
    return out


APPLIES["rubin_triplet_69"] = rubin_applies
APPLIES["rubin_triplet_w30_69"] = rubin_applies
APPLIES["difference_stamps_arcsec_63_reference_source"] = reference_source_applies


#: preprocessing name (as model cards give it) -> function(items, device) -> tensor
PREPROCESSORS: dict[str, Callable[[Sequence[Any], str], Any]] = {
    "difference_stamps_69": lambda items, device: difference_alert_batch(items, 69, device),
    # realbogus >= 2.1: braai d6_m7's row-wise L2 triplet, resampled 63 -> 69
    "difference_stamps_rownorm_69": lambda items, device: difference_alert_batch_rownorm(items, 69, device),
    # the same triplet unresampled, 63 centred in 69 with zeros (realbogus studies, issue #25)
    "difference_stamps_rownorm_pad69": lambda items, device: difference_alert_batch_rownorm_padded(items, 69, device),
    "wise_w123_80": lambda items, device: multiband_batch(items, 80, WISE_BANDS, device),
    "hst_raw_2048x4096": lambda items, device: raw_exposure_items(items, 1, device),
    # the reduced-resolution HR-CelestialNet: the same trimmed chips, binned 4 x 4 to 512 x 1024
    "hst_raw_binned4": lambda items, device: raw_exposure_items(items, 4, device),
    # braai d6_m7 (ZTF's alert drb): row-wise L2; braai d6_m9: whole-cutout L2
    "braai_rownorm_63": lambda items, device: ztf_triplet_batch(items, True, device),
    "braai_l2norm_63": lambda items, device: ztf_triplet_batch(items, False, device),
    # ACAI: (whole-cutout L2 triplet, 25 raw candidate features)
    "acai_d1_20201130": lambda items, device: acai_batch(items, device),
    # the alert-class model: any survey's stamps on ZTF's 1.01 arcsec pixel grid, 63 x 63
    "difference_stamps_arcsec_63": lambda items, device: difference_alert_batch_by_scale(items, 63, 1.01, device),
    # alertclass >= 2.0: the same stamps and the packet's known-Solar-System flag (N, 1)
    "difference_stamps_arcsec_63_solar_system": lambda items, device: stamps_with_solar_system(items, device),
    # alertclass >= 3.0: the same stamps, the flag and the packet's nearest reference-image source (N, 6)
    "difference_stamps_arcsec_63_reference_source": lambda items, device: stamps_with_reference_source(items, device),
    # Rubin alerts at 0.2"/px: whole cutouts (up to the frame) / their central 30 x 30 pixels,
    # background-subtracted, one asinh scale per alert (the difference's noise), in 69 x 69
    "rubin_triplet_69": lambda items, device: rubin_triplet_batch(items, RUBIN_FRAME, None, device),
    "rubin_triplet_w30_69": lambda items, device: rubin_triplet_batch(items, RUBIN_FRAME, 30, device),
}
