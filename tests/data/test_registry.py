"""load_dataset: names, default folders and the download switch."""

from __future__ import annotations

import pytest
import torch

import glsverify.data.download as download
from glsverify.data import DATASET_NAMES, default_data_dir, load_dataset
from glsverify.errors import ConfigError, DatasetError
from tests.data.builders import write_tiny_cifar, write_tiny_mnist


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'; known datasets: digits, mnist, cifar10"):
        load_dataset("svhn")
    assert DATASET_NAMES == ("digits", "mnist", "cifar10")


def test_digits_needs_no_files(tmp_path):
    dataset = load_dataset("digits", data_dir=tmp_path / "ignored")
    assert dataset.name == "digits" and (len(dataset.train), len(dataset.test)) == (1437, 360)


def test_files_from_data_dir(tmp_path):
    arrays = write_tiny_mnist(tmp_path / "MNIST" / "raw")
    assert load_dataset("mnist", tmp_path).test.labels.tolist() == arrays["test_labels"].tolist()
    batches = write_tiny_cifar(tmp_path / "cifar-10-batches-py")
    assert load_dataset("cifar10", str(tmp_path)).test.labels.tolist() == batches["test_batch"][1]


def test_default_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GLSVERIFY_DATA_DIR", str(tmp_path))
    assert default_data_dir("mnist") == tmp_path / "mnist"
    arrays = write_tiny_mnist(tmp_path / "mnist")
    assert torch.equal(load_dataset("mnist").train.labels, torch.from_numpy(arrays["train_labels"]).long())
    with pytest.raises(DatasetError, match=str(tmp_path / "cifar10")):
        load_dataset("cifar10")
    monkeypatch.delenv("GLSVERIFY_DATA_DIR")
    assert default_data_dir("cifar10").parts[-4:] == (".cache", "glsverify", "data", "cifar10")


@pytest.mark.parametrize("name, function", [("mnist", "download_mnist"), ("cifar10", "download_cifar10")])
def test_download_switch_fetches_before_loading(tmp_path, monkeypatch, name, function):
    calls = []

    def fake_download(folder):
        calls.append(folder)
        (write_tiny_mnist if name == "mnist" else write_tiny_cifar)(folder)
        return folder

    monkeypatch.setattr(download, function, fake_download)
    with pytest.raises(DatasetError):
        load_dataset(name, tmp_path / name)  # without download=True nothing is fetched
    assert calls == []
    assert len(load_dataset(name, tmp_path / name, download=True).test) > 0
    assert calls == [tmp_path / name]


def test_dataset_names_do_not_import_torch():
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo_root = str(Path(__file__).resolve().parents[2])
    code = ("import sys; from glsverify.data import DATASET_NAMES; "
            "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root,
                   env={**os.environ, "PYTHONPATH": repo_root})
