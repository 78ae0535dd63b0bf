"""``load_dataset(name)``: the one entry point from a dataset name to a :class:`Dataset`.

Loader modules are imported only when their dataset is asked for, so that importing the registry
(e.g. for ``--help`` or a name check) stays cheap. When no ``data_dir`` is given, files are looked
for (and downloaded to) ``$GLSVERIFY_DATA_DIR/<name>``, or ``~/.cache/glsverify/data/<name>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from glsverify.errors import ConfigError

if TYPE_CHECKING:
    from glsverify.data.base import Dataset

DATASET_NAMES: tuple[str, ...] = ("digits", "mnist", "cifar10")
DATA_DIR_ENV = "GLSVERIFY_DATA_DIR"


def default_data_dir(name: str) -> Path:
    """Where dataset ``name`` lives when no ``data_dir`` is given."""
    root = os.environ.get(DATA_DIR_ENV)
    base = Path(root) if root else Path.home() / ".cache" / "glsverify" / "data"
    return base / name


def load_dataset(name: str, data_dir: str | os.PathLike | None = None,
                 download: bool = False) -> Dataset:
    """Load dataset ``name`` ("digits", "mnist" or "cifar10").

    ``digits`` is bundled with scikit-learn and ignores ``data_dir`` and ``download``. For the
    others, ``download=True`` first fetches any missing files into ``data_dir`` (checksummed).
    Raises :class:`ConfigError` for an unknown name and :class:`DatasetError` for missing or
    malformed files.
    """
    if name not in DATASET_NAMES:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    if name == "digits":
        from glsverify.data.digits import load_digits_dataset

        return load_digits_dataset()
    folder = Path(data_dir) if data_dir is not None else default_data_dir(name)
    if name == "mnist":
        from glsverify.data.mnist import load_mnist

        if download:
            from glsverify.data.download import download_mnist

            download_mnist(folder)
        return load_mnist(folder)
    from glsverify.data.cifar10 import load_cifar10

    if download:
        from glsverify.data.download import download_cifar10

        download_cifar10(folder)
    return load_cifar10(folder)
