"""Loaders for users' labelled data: folder per class (FITS, PNG, JPEG, .npy) and arrays + CSV."""
from __future__ import annotations

import csv

import matplotlib
import matplotlib.image
import numpy as np
import pytest
from astropy.io import fits

from engines.training.datasets import load_arrays, load_folder, load_labelled
from engines.training.ztf_files import TrainingDataError

matplotlib.use("Agg")


def _write_folder(root, rng):
    (root / "bogus").mkdir(parents=True)
    (root / "real").mkdir()
    stamps = {}
    for i in range(3):
        cube = rng.normal(size=(3, 16, 16)).astype(np.float32)
        fits.PrimaryHDU(cube).writeto(root / "bogus" / f"b{i}.fits")
        stamps[f"bogus/b{i}.fits"] = cube
    for i in range(2):
        cube = rng.normal(size=(3, 16, 16)).astype(np.float32)
        np.save(root / "real" / f"r{i}.npy", cube)
        stamps[f"real/r{i}.npy"] = cube
    rgb = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    matplotlib.image.imsave(root / "real" / "r9.png", rgb)
    (root / "real" / "notes.txt").write_text("not an image")
    return stamps


def test_folder_layout_reads_fits_npy_png_with_labels_and_values(tmp_path):
    rng = np.random.default_rng(0)
    stamps = _write_folder(tmp_path, rng)
    data = load_folder(tmp_path)
    assert data.class_names == ("bogus", "real")
    assert data.images.shape == (6, 3, 16, 16)
    assert list(data.labels) == [0, 0, 0, 1, 1, 1]
    for source, cube in stamps.items():
        np.testing.assert_allclose(data.images[data.sources.index(source)], cube, rtol=1e-6)
    png = data.images[data.sources.index("real/r9.png")]
    assert 0.0 <= png.min() and png.max() <= 1.0
    assert len(set(data.groups)) == 6            # no metadata: each file its own group
    assert len(data.data_sha256) == 64


def test_folder_layout_groups_from_metadata_csv(tmp_path):
    _write_folder(tmp_path, np.random.default_rng(1))
    with open(tmp_path / "metadata.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "field"])
        writer.writerows([["bogus/b0.fits", "f1"], ["bogus/b1.fits", "f1"], ["real/r0.npy", "f2"]])
    data = load_labelled(tmp_path, group_column="field")
    assert data.groups[data.sources.index("bogus/b0.fits")] == "f1"
    assert data.groups[data.sources.index("bogus/b1.fits")] == "f1"
    assert data.groups[data.sources.index("real/r0.npy")] == "f2"


def test_folder_layout_resizes_odd_sizes_and_refuses_one_class(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "x.npy", np.ones((3, 16, 16), np.float32))
    np.save(tmp_path / "a" / "y.npy", np.ones((3, 16, 16), np.float32))
    np.save(tmp_path / "b" / "z.npy", np.full((3, 8, 8), 2.0, np.float32))
    data = load_folder(tmp_path)
    assert data.images.shape == (3, 3, 16, 16)
    np.testing.assert_allclose(data.images[2], 2.0)
    only = tmp_path / "only"
    (only / "a").mkdir(parents=True)
    with pytest.raises(TrainingDataError):
        load_folder(only)


def test_npz_with_labels_csv_and_group_column(tmp_path):
    images = np.random.default_rng(2).normal(size=(4, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "set.npz", images=images)
    with open(tmp_path / "set.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "objectId"])
        writer.writerows([["real", "ZTF1"], ["bogus", "ZTF1"], ["real", "ZTF2"], ["bogus", "ZTF3"]])
    data = load_arrays(tmp_path / "set.npz", group_column="objectId")
    assert data.class_names == ("bogus", "real")
    assert list(data.labels) == [1, 0, 1, 0]
    assert data.groups == ("ZTF1", "ZTF1", "ZTF2", "ZTF3")
    np.testing.assert_array_equal(data.images, images)


def test_npz_channel_last_and_integer_labels_array(tmp_path):
    images = np.random.default_rng(3).normal(size=(3, 10, 10, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=images, labels=np.array([0, 1, 1]))
    data = load_labelled(tmp_path / "x.npz")
    assert data.images.shape == (3, 3, 10, 10)
    assert data.class_names == ("0", "1")
    np.testing.assert_array_equal(data.images[1, 2], images[1, :, :, 2])


def test_arrays_errors_are_typed(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(TrainingDataError, match="no labels"):
        load_arrays(tmp_path / "bad.npz")
    (tmp_path / "bad.csv").write_text("label\nreal\n")
    with pytest.raises(TrainingDataError, match="1 rows for 2 images"):
        load_arrays(tmp_path / "bad.npz")
    with pytest.raises(TrainingDataError):
        load_labelled(tmp_path / "missing.npz")
