"""Users' labelled image sets, in the layouts labelled astronomy sets are published in.

* **folder per class**: ``ROOT/<class name>/<file>`` with FITS (``.fits``, ``.fit``, ``.fts``,
  optionally ``.gz``), PNG / JPEG, or ``.npy`` stamps. Optional ``ROOT/metadata.csv`` with a
  ``path`` column (relative to ROOT) and a group column (``--group-column``) says which object /
  field each file belongs to; without it every file is its own group.
* **arrays + labels CSV**: an ``.npz`` (or ``.h5`` / ``.hdf5`` when h5py is installed) holding
  one image array (N, H, W) or (N, C, H, W) (key ``images``, ``x``, ``X`` or ``data``; else the
  only array), and a CSV beside it (``<stem>.csv`` or ``labels.csv``, or given explicitly) with
  one row per image in array order: a ``label`` column (class name or integer) and optionally
  the group column. ZTF's published real/bogus sets are in this form.

Loaders return raw float32 arrays (N, C, H, W) of one size; images of other sizes are resized
to the most common size (bilinear) and the count is logged. Channel meaning is the user's:
for the real/bogus model (science, template, difference), for IICnet (W1, W2, W3).
Model-specific normalisation happens later, in :mod:`engines.training.adapters`.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from engines.training.ztf_files import TrainingDataError

__all__ = ["LabelledImages", "load_labelled", "load_folder", "load_arrays", "IMAGE_SUFFIXES"]

log = structlog.get_logger(__name__)

IMAGE_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".png", ".jpg", ".jpeg", ".npy")
_ARRAY_KEYS = ("images", "x", "X", "data", "stamps")


@dataclass(frozen=True)
class LabelledImages:
    """A labelled set: ``images`` (N, C, H, W) float32, ``labels`` (N,) class indices."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    groups: tuple[str, ...]
    sources: tuple[str, ...]       # file (and index) each image came from
    data_sha256: str               # hash over the input files' bytes, in sorted order

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> LabelledImages:
        idx = np.asarray(indices, dtype=np.int64)
        return LabelledImages(
            images=self.images[idx], labels=self.labels[idx], class_names=self.class_names,
            groups=tuple(self.groups[i] for i in idx), sources=tuple(self.sources[i] for i in idx),
            data_sha256=self.data_sha256,
        )


def _hash_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.name).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _as_chw(array: np.ndarray, source: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        # (H, W, C) from image files and channel-last arrays; (C, H, W) when C is small first.
        if array.shape[0] <= 4 and array.shape[-1] > 4:
            return array
        if array.shape[-1] <= 4:
            return np.moveaxis(array, -1, 0)
        return array
    raise TrainingDataError(f"{source}: expected a 2-D or 3-D image, got shape {array.shape}")


def _read_fits(path: Path) -> np.ndarray:
    from astropy.io import fits

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        with fits.open(io.BytesIO(raw), memmap=False) as hdus:
            for hdu in hdus:
                if hdu.data is not None and getattr(hdu.data, "ndim", 0) >= 2:
                    return np.asarray(hdu.data, dtype=np.float32)
    except (OSError, ValueError, TypeError) as exc:
        raise TrainingDataError(f"{path}: not a readable FITS file: {exc}") from exc
    raise TrainingDataError(f"{path}: no image HDU")


def _read_raster(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    try:
        data = np.asarray(mpimg.imread(path), dtype=np.float32)
    except (OSError, ValueError, SyntaxError) as exc:
        raise TrainingDataError(f"{path}: not a readable PNG/JPEG: {exc}") from exc
    if data.ndim == 3 and data.shape[-1] == 4:  # drop alpha
        data = data[..., :3]
    if path.suffix.lower() in (".jpg", ".jpeg") and data.max() > 1.0:
        data = data / 255.0
    return data


def read_image(path: Path) -> np.ndarray:
    """One image file as (C, H, W) float32."""
    name = path.name.lower()
    if name.endswith((".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")):
        return _as_chw(_read_fits(path), str(path))
    if name.endswith((".png", ".jpg", ".jpeg")):
        return _as_chw(_read_raster(path), str(path))
    if name.endswith(".npy"):
        try:
            return _as_chw(np.load(path, allow_pickle=False), str(path))
        except ValueError as exc:
            raise TrainingDataError(f"{path}: not a readable .npy: {exc}") from exc
    raise TrainingDataError(f"{path}: unsupported image type")


def _stack_same_size(images: list[np.ndarray], sources: list[str]) -> np.ndarray:
    """Stack images, resizing those off the most common (C, H, W) (bilinear, channels repeated
    from one where needed)."""
    import torch
    import torch.nn.functional as F

    shapes = Counter(im.shape for im in images)
    target = shapes.most_common(1)[0][0]
    out = np.empty((len(images), *target), dtype=np.float32)
    resized = 0
    for i, im in enumerate(images):
        if im.shape != target:
            if im.shape[0] != target[0]:
                if im.shape[0] != 1:
                    raise TrainingDataError(f"{sources[i]}: {im.shape[0]} channels, most images have {target[0]}")
                im = np.repeat(im, target[0], axis=0)
            if im.shape[1:] != target[1:]:
                im = F.interpolate(torch.from_numpy(np.ascontiguousarray(im))[None], size=target[1:],
                                   mode="bilinear", align_corners=False)[0].numpy()
            resized += 1
        out[i] = im
    if resized:
        log.info("images_resized", count=resized, to=list(target))
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error) as exc:
        raise TrainingDataError(f"{path}: cannot read CSV: {exc}") from exc


def load_folder(root: Path, group_column: str | None = None) -> LabelledImages:
    """Folder-per-class layout (see the module docstring)."""
    root = Path(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise TrainingDataError(f"{root}: need at least two class folders, found {len(class_dirs)}")
    group_of: dict[str, str] = {}
    metadata = root / "metadata.csv"
    if metadata.exists() and group_column:
        for row in _read_csv(metadata):
            if "path" not in row or group_column not in row:
                raise TrainingDataError(f"{metadata}: needs columns 'path' and {group_column!r}")
            group_of[str(Path(row["path"]))] = row[group_column]
    images: list[np.ndarray] = []
    labels: list[int] = []
    groups: list[str] = []
    sources: list[str] = []
    files: list[Path] = []
    for index, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.rglob("*")):
            if not path.is_file() or not path.name.lower().endswith(IMAGE_SUFFIXES):
                continue
            relative = str(path.relative_to(root))
            images.append(read_image(path))
            labels.append(index)
            groups.append(group_of.get(relative, relative))
            sources.append(relative)
            files.append(path)
    if not images:
        raise TrainingDataError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return LabelledImages(
        images=_stack_same_size(images, sources), labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(d.name for d in class_dirs), groups=tuple(groups), sources=tuple(sources),
        data_sha256=_hash_files(files + ([metadata] if metadata.exists() else [])),
    )


def _load_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The image array and, if the file has one, a label array."""
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise TrainingDataError(f"{path}: not a readable .npz: {exc}") from exc
    elif path.suffix.lower() in (".h5", ".hdf5"):
        try:
            import h5py
        except ImportError as exc:
            raise TrainingDataError("HDF5 input needs h5py (pip install h5py)") from exc
        try:
            with h5py.File(path, "r") as h5:
                arrays = {k: np.asarray(h5[k]) for k in h5.keys() if isinstance(h5[k], h5py.Dataset)}
        except OSError as exc:
            raise TrainingDataError(f"{path}: not a readable HDF5 file: {exc}") from exc
    else:
        raise TrainingDataError(f"{path}: expected .npz, .h5 or .hdf5")
    key = next((k for k in _ARRAY_KEYS if k in arrays), None)
    image_keys = [k for k, v in arrays.items() if v.ndim >= 3]
    if key is None:
        if len(image_keys) != 1:
            raise TrainingDataError(f"{path}: name the image array one of {_ARRAY_KEYS}; found {sorted(arrays)}")
        key = image_keys[0]
    labels = next((arrays[k] for k in ("labels", "label", "y") if k in arrays), None)
    return arrays[key], labels


def load_arrays(path: Path, labels_csv: Path | None = None, group_column: str | None = None) -> LabelledImages:
    """``.npz`` / HDF5 of images plus a labels CSV (see the module docstring)."""
    path = Path(path)
    array, label_array = _load_array_file(path)
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] > 4 and array.shape[-1] <= 4:
        array = np.moveaxis(array, -1, 1)
    if array.ndim != 4:
        raise TrainingDataError(f"{path}: image array must be (N, H, W) or (N, C, H, W), got {array.shape}")
    n = array.shape[0]
    csv_path = labels_csv
    if csv_path is None:
        for candidate in (path.with_suffix(".csv"), path.parent / "labels.csv"):
            if candidate.exists():
                csv_path = candidate
                break
    rows = _read_csv(csv_path) if csv_path is not None else []
    if rows and len(rows) != n:
        raise TrainingDataError(f"{csv_path}: {len(rows)} rows for {n} images")
    if rows and "label" in rows[0]:
        raw_labels = [r["label"] for r in rows]
    elif label_array is not None:
        raw_labels = [str(v) for v in np.asarray(label_array).ravel()]
    else:
        raise TrainingDataError(f"{path}: no labels (a CSV with a 'label' column, or a 'labels' array)")
    if len(raw_labels) != n:
        raise TrainingDataError(f"{path}: {len(raw_labels)} labels for {n} images")
    if all(lab.lstrip("-").isdigit() for lab in raw_labels):
        values = sorted({int(lab) for lab in raw_labels})
        class_names = tuple(str(v) for v in values)
        labels = np.asarray([values.index(int(lab)) for lab in raw_labels], dtype=np.int64)
    else:
        class_names = tuple(sorted(set(raw_labels)))
        labels = np.asarray([class_names.index(lab) for lab in raw_labels], dtype=np.int64)
    if group_column:
        if not rows or group_column not in rows[0]:
            raise TrainingDataError(f"group column {group_column!r} not in {csv_path}")
        groups = tuple(r[group_column] for r in rows)
    else:
        groups = tuple(f"{path.name}[{i}]" for i in range(n))
    files = [path] + ([Path(csv_path)] if csv_path is not None else [])
    return LabelledImages(
        images=np.ascontiguousarray(array, dtype=np.float32), labels=labels, class_names=class_names,
        groups=groups, sources=tuple(f"{path.name}[{i}]" for i in range(n)), data_sha256=_hash_files(files),
    )


def load_labelled(path: Path, labels_csv: Path | None = None, group_column: str | None = None) -> LabelledImages:
    """Either layout, by what ``path`` is: a folder -> folder per class; a file -> arrays + CSV."""
    path = Path(path)
    if not path.exists():
        raise TrainingDataError(f"{path}: no such file or folder")
    if path.is_dir():
        return load_folder(path, group_column=group_column)
    return load_arrays(path, labels_csv=labels_csv, group_column=group_column)
