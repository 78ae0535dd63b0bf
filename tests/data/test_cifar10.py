"""CIFAR-10 loader: official batches (Python 2 and 3 pickles), ERAN CSV, layouts and errors."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from glsverify.data.cifar10 import CLASS_NAMES, load_cifar10
from glsverify.errors import DatasetError
from tests.data.builders import eran_csv_text, python3_batch_pickle, write_tiny_cifar


def expected_split(batches, names):
    data = np.concatenate([batches[name][0] for name in names])
    labels = [label for name in names for label in batches[name][1]]
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255), labels


@pytest.mark.parametrize("python2", [True, False])
@pytest.mark.parametrize("layout", [".", "cifar-10-batches-py", "cifar10", "cifar10/cifar-10-batches-py"])
def test_official_batches(tmp_path, python2, layout):
    batches = write_tiny_cifar(tmp_path / layout, python2=python2)
    dataset = load_cifar10(tmp_path)
    assert dataset.input_shape == (3, 32, 32) and dataset.class_names == CLASS_NAMES
    assert dataset.mean == (0.4914, 0.4822, 0.4465) and dataset.std == (0.2023, 0.1994, 0.2010)
    assert dataset.notes == ()
    images, labels = expected_split(batches, [f"data_batch_{i}" for i in range(1, 6)])
    assert torch.equal(dataset.train.images, images) and dataset.train.labels.tolist() == labels
    images, labels = expected_split(batches, ["test_batch"])
    assert torch.equal(dataset.test.images, images) and dataset.test.labels.tolist() == labels
    assert dataset.test.images.dtype == torch.float32 and dataset.test.labels.dtype == torch.int64
    assert dataset.test.images.min() == 0 and dataset.test.images.max() == 1
    # row layout: 1024 red, then green, then blue values
    assert dataset.test.images[0, 1, 0, 0] * 255 == batches["test_batch"][0][0, 1024]


def test_eran_csv_is_a_test_only_source(tmp_path):
    rng = np.random.default_rng(1)
    images_hwc = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "cifar10_test.csv").write_text(eran_csv_text(images_hwc, [3, 8, 0]))
    dataset = load_cifar10(tmp_path)
    assert len(dataset.train) == 0 and dataset.train.images.shape == (0, 3, 32, 32)
    assert dataset.test.labels.tolist() == [3, 8, 0]
    expected = torch.from_numpy(images_hwc.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    assert torch.equal(dataset.test.images, expected)
    assert dataset.test.images[1, 2, 4, 5] * 255 == images_hwc[1, 4, 5, 2]  # channel 2 of pixel (4, 5)
    assert len(dataset.notes) == 1 and "train split is empty" in dataset.notes[0]
    write_tiny_cifar(folder)  # official batches take precedence over the CSV
    assert len(load_cifar10(tmp_path).train) == 15


@pytest.mark.parametrize("line, message", [
    ("1,2,3", "expected 3073 comma-separated integers"),
    ("10," + ",".join(["0"] * 3072), "label 10 is not a class"),
    ("1," + ",".join(["256"] * 3072), "pixel values must lie in 0..255"),
    ("1," + ",".join(["x"] * 3072), "a field is not an integer"),
])
def test_eran_csv_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "cifar10_test.csv"
    path.write_text("0," + ",".join(["0"] * 3072) + "\n" + line + "\n")
    with pytest.raises(DatasetError, match=f"{path}:2: {message}"):
        load_cifar10(tmp_path)


def test_empty_csv(tmp_path):
    (tmp_path / "cifar10_test.csv").write_text("\n")
    with pytest.raises(DatasetError, match="no images"):
        load_cifar10(tmp_path)


def test_missing_and_incomplete(tmp_path):
    with pytest.raises(DatasetError, match="CIFAR-10 not found .*--download"):
        load_cifar10(tmp_path)
    write_tiny_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="incomplete CIFAR-10 batches, missing data_batch_3$"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("content, message", [
    (pickle.dumps([1, 2], protocol=4), "expected a pickled dict, got list"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=4), "needs 'data' and 'labels'"),
    (python3_batch_pickle(np.zeros((2, 100), np.uint8), [0, 1]), r"shape \[N, 3072\], got uint8 array"),
    (python3_batch_pickle(np.zeros((2, 3072), np.float32), [0, 1]), "must be a uint8 array"),
    (python3_batch_pickle(np.zeros((2, 3072), np.uint8), [0]), "1 labels for 2 images"),
    (python3_batch_pickle(np.zeros((2, 3072), np.uint8), [0, 12]), "label 12 at index 1"),
    (python3_batch_pickle(np.zeros((2, 3072), np.uint8), [b"a", b"b"]), "list of integers"),
    (b"\x80\x02garbage", "not a readable pickle"),
])
def test_bad_batches(tmp_path, content, message):
    write_tiny_cifar(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(content)
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "data_batch_2")) + ": .*" + message):
        load_cifar10(tmp_path)


def test_real_eran_csv(shared_data_dir):
    if not (shared_data_dir / "cifar10" / "cifar10_test.csv").is_file():
        pytest.skip("ERAN CIFAR-10 CSV not present")
    dataset = load_cifar10(shared_data_dir)
    assert len(dataset.test) == 100 and len(dataset.train) == 0
    assert dataset.test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(dataset.test.labels).tolist() == [10, 6, 8, 10, 7, 8, 16, 11, 13, 11]
    # neighbouring pixels of natural images are similar: a wrong HWC/CHW reading would not be
    images = dataset.test.images
    assert (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean() < 0.1
