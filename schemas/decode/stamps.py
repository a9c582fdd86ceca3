"""Cutout bytes -> :class:`~schemas.alert.Stamp`, and placing edge stamps in a fixed frame.

Decoding keeps each stamp as the survey sent it (float32, FITS orientation, never padded or
resized). Engines need a fixed frame; :func:`place_in_frame` is the pure helper their
preprocessing uses.

How edge stamps are placed (ZTF cuts 63x63 stamps at the CCD-quadrant edge, e.g. 63x53 or
41x63 pixels): the source is at the stamp centre except along an axis where the cut hit a
detector edge, so the missing rows/columns are those beyond that edge. Along each short axis:

* if the candidate position on that axis (``xpos``/``ypos``, 1-based FITS pixels) is within
  half a frame of the low edge (pixel 1), the missing pixels are on the low side: the data goes
  at the high end of the frame (row/column ``frame - size`` onwards);
* else if it is within half a frame of the high edge (``detector_shape``, default the ZTF
  quadrant 3080 rows x 3072 columns), or the position is known but the detector size is not,
  the missing pixels are on the high side: the data goes at index 0;
* with no position, the data is centred (extra pixel of an odd gap on the high side).

Missing pixels are NaN and the boolean mask says which pixels are real. Examples from the
real data: ``ypos = 10.4`` with 41 rows -> rows 22..62; ``xpos = 3051`` with 53 columns ->
columns 0..52.
"""
from __future__ import annotations

import numpy as np

from schemas.alert import Stamp
from schemas.decode.errors import DecodeError, Reason
from schemas.decode.fits import FitsHDU, inflate, is_gzip, is_jpeg, read_fits

__all__ = ["stamp_from_cutout", "place_in_frame", "crop_centre", "ZTF_QUADRANT_SHAPE", "RUBIN_EXTRA_PLANES", "STAMP_MAX_SIDE"]

#: The most of a stamp any model reads, per survey (rows and columns): decoding keeps the centre
#: that size, so a hostile 2000 x 2000 float32 stamp (16 MB, 25 kB gzipped) costs 63 x 63 once
#: decoded, and the service's memory is bounded by what it scores. Every model frames stamps in
#: 63 x 63 (``engines.preprocess.STAMP_FRAME``), centre-cropping bigger ones: ZTF (1.01"/px)
#: uses 63 pixels; Rubin (0.2"/px) is resampled to ZTF's scale first, so 63 x 1.01 / 0.2 = 318
#: pixels reach a model (real Rubin cutouts are 30-60 pixels). Unknown surveys: no cap.
STAMP_MAX_SIDE: dict[str, int] = {"ztf": 63, "rubin": 320}

#: Rows x columns of a ZTF CCD quadrant image (NAXIS2 x NAXIS1).
ZTF_QUADRANT_SHAPE: tuple[int, int] = (3080, 3072)

#: Rubin cutout extension names -> Stamp.extra keys.
RUBIN_EXTRA_PLANES: dict[str, str] = {
    "UNCERT": "variance",      # UTYPE 'VarianceUncertainty' in the packets seen
    "VARIANCE": "variance",
    "MASK": "mask",
    "PSFIMAGE": "psf",
    "PSF": "psf",
}


def _image_hdu(hdus: list[FitsHDU]) -> tuple[int, FitsHDU]:
    for i, hdu in enumerate(hdus):
        if hdu.data is not None and hdu.data.size:
            return i, hdu
    naxis = hdus[0].header.get("NAXIS") if hdus else None
    raise DecodeError(Reason.BAD_NAXIS, f"no image HDU with data (NAXIS={naxis!r})")


def _as_stamp_array(hdu: FitsHDU, name: str) -> np.ndarray:
    data = hdu.data
    if data is None:  # _image_hdu returns HDUs with data; a caller may not
        raise DecodeError(Reason.BAD_NAXIS, f"{name}: no image data")
    if data.ndim != 2:
        raise DecodeError(Reason.BAD_NAXIS, f"{name}: a 2-D image is needed, got NAXIS={data.ndim}")
    if data.dtype.kind not in "fiu":
        raise DecodeError(Reason.UNSUPPORTED_BITPIX, f"{name}: dtype {data.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 range -> inf
        out = data.astype(np.float32)  # native-endian copy; exact for float32 input
    if not np.isfinite(out).any():
        raise DecodeError(Reason.ALL_NAN, f"{name}: no finite pixel in a {out.shape} stamp")
    return out


def crop_centre(data: np.ndarray, side: int | None) -> np.ndarray:
    """The central ``side`` x ``side`` of a 2-D array (as ``engines.preprocess.frame_stamp`` crops),
    copied so the full array can be freed; unchanged where it already fits."""
    if side is None or data.ndim != 2 or (data.shape[0] <= side and data.shape[1] <= side):
        return data
    rows, cols = data.shape
    top, left = max((rows - side) // 2, 0), max((cols - side) // 2, 0)
    return np.ascontiguousarray(data[top:top + side, left:left + side])


def stamp_from_cutout(raw: bytes | None, *, name: str, max_inflated_bytes: int,
                      keep_extra_planes: bool = False, max_side: int | None = None) -> Stamp:
    """One cutout (gzip FITS, plain FITS) -> Stamp; JPEG and other formats are refused.

    ``keep_extra_planes``: keep the other image HDUs (Rubin variance / mask / PSF) in
    ``Stamp.extra`` under :data:`RUBIN_EXTRA_PLANES` names (else their EXTNAME lower-cased).
    ``max_side``: keep only the centre that size of the image and of each plane
    (:data:`STAMP_MAX_SIDE`: what the survey's models read).
    """
    if raw is None:
        raise DecodeError(Reason.MISSING_FIELD, f"{name} is missing")
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise DecodeError(Reason.BAD_FIELD_TYPE, f"{name} is a {type(raw).__name__}, not bytes")
    if len(raw) == 0:
        raise DecodeError(Reason.MISSING_FIELD, f"{name} is empty")
    raw = bytes(raw)
    if is_gzip(raw):
        raw = inflate(raw, max_inflated_bytes)
    elif len(raw) > max_inflated_bytes:
        raise DecodeError(Reason.TOO_LARGE, f"{name}: {len(raw)} bytes")
    if is_jpeg(raw):
        raise DecodeError(Reason.JPEG_CUTOUT, f"{name} is a JPEG image, not FITS")
    hdus = read_fits(raw, max_data_bytes=max_inflated_bytes)
    index, hdu = _image_hdu(hdus)
    data = crop_centre(_as_stamp_array(hdu, name), max_side)
    extra: dict[str, np.ndarray] = {}
    if keep_extra_planes:
        for j, other in enumerate(hdus):
            if j == index or other.data is None:
                continue
            key = RUBIN_EXTRA_PLANES.get(other.name, other.name.lower() or f"hdu{j}")
            # float32 planes stay float32; the float64 PSF stays float64 (no precision lost)
            plane = crop_centre(other.data, max_side) if other.data.ndim == 2 else other.data
            extra[key] = plane.astype(np.float32 if plane.dtype.itemsize <= 4 else np.float64)
    return Stamp(data=data, header=hdu.header, extra=extra)


def _offset(size: int, frame: int, pos: float | None, detector: int | None) -> int:
    gap = frame - size
    if gap == 0:
        return 0
    if pos is None or not np.isfinite(pos):
        return gap // 2
    half = frame / 2.0
    if pos <= half + 0.5:
        return gap            # cut at the low edge: missing pixels come first
    if detector is None or pos >= detector - half + 0.5:
        return 0              # cut at the high edge: missing pixels come last
    return gap // 2


def place_in_frame(data: np.ndarray, frame: tuple[int, int] = (63, 63), *,
                   xpos: float | None = None, ypos: float | None = None,
                   detector_shape: tuple[int, int] | None = ZTF_QUADRANT_SHAPE
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Place a 2-D stamp in a ``frame`` (rows, cols) array of NaN; returns (array, mask).

    ``mask`` is True where the pixel is real. ``xpos``/``ypos`` (1-based detector pixel of the
    candidate) decide which side is missing (see the module docstring); without them the stamp
    is centred. A stamp larger than the frame raises ``DecodeError(BAD_STAMP_SHAPE)``.
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise DecodeError(Reason.BAD_NAXIS, f"stamp has {arr.ndim} axes")
    rows, cols = arr.shape
    fr, fc = frame
    if rows == 0 or cols == 0 or rows > fr or cols > fc:
        raise DecodeError(Reason.BAD_STAMP_SHAPE, f"stamp {arr.shape} does not fit frame {frame}")
    det_rows, det_cols = detector_shape if detector_shape is not None else (None, None)
    r0 = _offset(rows, fr, ypos, det_rows)
    c0 = _offset(cols, fc, xpos, det_cols)
    out = np.full(frame, np.nan, dtype=np.float32)
    mask = np.zeros(frame, dtype=bool)
    out[r0:r0 + rows, c0:c0 + cols] = arr
    mask[r0:r0 + rows, c0:c0 + cols] = True
    return out, mask
