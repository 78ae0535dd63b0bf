"""MNIST loader on tiny IDX files in every accepted layout, its error messages, and the real files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from glsverify.data.mnist import load_mnist
from glsverify.errors import DatasetError
from tests.data.builders import idx_bytes, write_file, write_tiny_mnist


def assert_matches(dataset, arrays):
    assert dataset.name == "mnist" and dataset.input_shape == (1, 28, 28)
    assert dataset.mean == (0.1307,) and dataset.std == (0.3081,)
    for split in ("train", "test"):
        got = dataset.split(split)
        assert got.images.dtype == torch.float32 and got.labels.dtype == torch.int64
        assert got.images.shape == (len(arrays[f"{split}_labels"]), 1, 28, 28)
        assert 0 <= got.images.min() and got.images.max() <= 1
        expected = torch.from_numpy(arrays[f"{split}_images"].astype(np.float32) / 255).unsqueeze(1)
        assert torch.equal(got.images, expected)
        assert got.labels.tolist() == arrays[f"{split}_labels"].tolist()


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", [".", "MNIST/raw", "mnist"])
def test_layouts_and_compression(tmp_path, gz, layout):
    arrays = write_tiny_mnist(tmp_path / layout, gz=gz)
    assert_matches(load_mnist(tmp_path), arrays)


def test_missing_and_incomplete(tmp_path):
    with pytest.raises(DatasetError, match="MNIST files not found .*--download"):
        load_mnist(tmp_path)
    write_tiny_mnist(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"raw: incomplete MNIST, missing t10k-labels-idx1-ubyte\[.gz\]$"):
        load_mnist(tmp_path)


def test_content_errors_name_the_file(tmp_path):
    write_tiny_mnist(tmp_path)
    labels_path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(5, dtype=np.uint8)), gz=True)
    with pytest.raises(DatasetError, match=f"{labels_path}: 5 labels for the 12 images"):
        load_mnist(tmp_path)
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.full(12, 10, dtype=np.uint8)), gz=True)
    with pytest.raises(DatasetError, match=f"{labels_path}: label 10 at index 0 is not a digit"):
        load_mnist(tmp_path)
    write_tiny_mnist(tmp_path)
    images_path = write_file(tmp_path / "t10k-images-idx3-ubyte",
                             idx_bytes(np.zeros((7, 28, 27), dtype=np.uint8)), gz=True)
    with pytest.raises(DatasetError, match=f"{images_path}: images are 28x27, expected 28x28"):
        load_mnist(tmp_path)
    write_tiny_mnist(tmp_path)
    images_path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(100)))
    with pytest.raises(DatasetError, match=f"{images_path}: bad magic number"):
        load_mnist(tmp_path)


def test_real_mnist_files(shared_data_dir):
    if not (shared_data_dir / "mnist").is_dir():
        pytest.skip("real MNIST files not present")
    dataset = load_mnist(shared_data_dir)
    assert (len(dataset.train), len(dataset.test)) == (60000, 10000)
    assert torch.bincount(dataset.train.labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(dataset.test.labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert dataset.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert dataset.test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert dataset.train.images.double().mean().item() * 255 == pytest.approx(33.3184, abs=1e-4)
    assert dataset.test.images.double().mean().item() * 255 == pytest.approx(33.7912, abs=1e-4)
    assert dataset.train.images.min() == 0 and dataset.train.images.max() == 1
