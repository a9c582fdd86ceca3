"""Raw training arrays -> network inputs, through the service's own preprocessing.

Training must see exactly what inference sees, so raw arrays are wrapped in the same
:class:`schemas.alert.Alert` / :class:`schemas.alert.Exposure` objects the decoders produce and
passed through :mod:`engines.preprocess` (framing, NaN fill, per-stamp min-max, resampling;
raw-frame trimming, 16-bit scaling, binning). Nothing here normalises on its own, except for
user images of HST-like sets that are not raw frames (see :func:`hst_inputs`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engines.training.ztf_files import TrainingDataError
from schemas.alert import Alert, Exposure, InputKind, Stamp

__all__ = ["stamp_triplets_to_alerts", "USER_PREPROCESSING", "realbogus_inputs", "wise_inputs", "hst_exposure", "hst_inputs", "model_inputs",
           "CHUNK"]

CHUNK = 512
#: the preprocessing :func:`model_inputs` gives a user's raw images, per network family where
#: it may differ from the family's current card (the shipped realbogus reads braai's row-wise
#: L2 stamps; a user's own real/bogus model keeps the min-max stamps); absent: the card's
USER_PREPROCESSING: dict[str, str] = {"realbogus": "difference_stamps_69"}


def stamp_triplets_to_alerts(triplets: np.ndarray, prefix: str = "train") -> list[Alert]:
    """(N, 3, H, W) (science, template, difference) -> Alerts as a ZTF decoder would give them."""
    alerts = []
    for i, triplet in enumerate(triplets):
        science, template, difference = (Stamp(data=np.asarray(p, dtype=np.float32)) for p in triplet)
        alerts.append(Alert(survey="ztf", alert_id=i, object_id=f"{prefix}-{i}", ra=0.0, dec=0.0, mjd=0.0, band="r",
                            science=science, template=template, difference=difference, schema_version="training"))
    return alerts


def realbogus_inputs(triplets: np.ndarray, device: str = "cpu", preprocessing: str = "difference_stamps_69") -> np.ndarray:
    """(N, 3, 69, 69) float32 network inputs for raw stamp triplets (``preprocessing``: an
    :mod:`engines.preprocess` key giving 3 x 69 x 69, the real/bogus card's)."""
    from engines.preprocess import PREPROCESSORS

    if triplets.ndim != 4 or triplets.shape[1] != 3:
        raise TrainingDataError(f"real/bogus data must be (N, 3, H, W) science/template/difference, got {triplets.shape}")
    if preprocessing not in PREPROCESSORS:
        raise TrainingDataError(f"unknown preprocessing {preprocessing!r}")
    out = []
    for start in range(0, len(triplets), CHUNK):
        alerts = stamp_triplets_to_alerts(triplets[start:start + CHUNK])
        out.append(PREPROCESSORS[preprocessing](alerts, device).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 3, 69, 69), dtype=np.float32)


def wise_inputs(cutouts: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(N, 3, 80, 80) float32 network inputs for (W1, W2, W3) cutouts of any size."""
    from engines.preprocess import WISE_BANDS, multiband_batch

    if cutouts.ndim != 4 or cutouts.shape[1] != 3:
        raise TrainingDataError(f"IICnet data must be (N, 3, H, W) W1/W2/W3, got {cutouts.shape}")
    out = []
    for start in range(0, len(cutouts), CHUNK):
        exposures = [Exposure(exposure_id=f"train-{start + i}", instrument="WISE", filter="W1W2W3", exposure_time_s=0.0,
                              mjd=0.0, kind=InputKind.MULTIBAND_CUTOUT,
                              images={b: np.asarray(c[k], dtype=np.float32) for k, b in enumerate(WISE_BANDS)})
                     for i, c in enumerate(cutouts[start:start + CHUNK])]
        out.append(multiband_batch(exposures, 80, WISE_BANDS, device).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 3, 80, 80), dtype=np.float32)


def hst_exposure(raw: np.ndarray, exposure_id: str, chip: int, instrument: str = "ACS/WFC") -> Exposure:
    """One raw chip extension as a single-chip raw Exposure (``SCI,1`` is chip 2, ``SCI,2`` chip 1)."""
    name = "SCI,2" if chip == 1 else "SCI,1"
    return Exposure(exposure_id=exposure_id, instrument=instrument, filter="F814W", exposure_time_s=0.0, mjd=0.0,
                    kind=InputKind.RAW_EXPOSURE, images={name: np.asarray(raw, dtype=np.float32)},
                    headers={name: {"CCDCHIP": chip}})


def hst_inputs(images: np.ndarray, input_hw: tuple[int, int], binning: int) -> np.ndarray:
    """(N, 1, H, W) network inputs for HR-CelestialNet from user images.

    Raw ACS/WFC chip extensions (2068 x 4144) go through the service's trimming and scaling; any
    other image is taken as already trimmed 16-bit data: scaled by 1/65535 and resized to
    ``input_hw`` (block mean when it divides, bilinear otherwise)."""
    from engines.preprocess import RAW_GEOMETRY, raw_exposure_batch

    if images.ndim == 3:
        images = images[:, None]
    if images.shape[1] != 1:
        images = images.mean(axis=1, keepdims=True)
    out = np.empty((len(images), 1, *input_hw), dtype=np.float32)
    for i, image in enumerate(images):
        if tuple(image.shape[1:]) == RAW_GEOMETRY["ACS/WFC"]:
            out[i] = raw_exposure_batch([hst_exposure(image[0], f"user-{i}", chip=2)], binning)[0].numpy()
            continue
        x = torch.from_numpy(np.nan_to_num(image.astype(np.float32) / 65535.0))[None]
        h, w = x.shape[-2:]
        if h % input_hw[0] == 0 and w % input_hw[1] == 0 and h // input_hw[0] == w // input_hw[1]:
            x = F.avg_pool2d(x, h // input_hw[0]) if h != input_hw[0] else x
        else:
            x = F.interpolate(x, size=input_hw, mode="bilinear", align_corners=False)
        out[i] = x[0].numpy()
    return out


def model_inputs(network: str, images: np.ndarray, input_shape: Sequence[int], binning: int = 4) -> np.ndarray:
    """Network inputs for ``network`` from a user's raw (N, C, H, W) images.

    IICnet takes one-channel (grayscale) cutouts too: the one image is given as all three bands,
    so the multi-band preprocessing's shared noise scale and asinh stretch apply to it alone."""
    if network == "realbogus":
        return realbogus_inputs(images, preprocessing=USER_PREPROCESSING["realbogus"])
    if network == "iicnet":
        if images.ndim == 4 and images.shape[1] == 1:   # a grayscale cutout fills the three bands
            images = np.repeat(images, 3, axis=1)
        return wise_inputs(images)
    if network == "hrcelestialnet":
        return hst_inputs(images, (int(input_shape[1]), int(input_shape[2])), binning)
    raise TrainingDataError(f"no input adapter for network {network!r}")
