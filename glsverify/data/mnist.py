"""MNIST from its four original IDX files (60,000 train + 10,000 test, 28x28 grey-scale).

The files may be gzipped (``*.gz``, as distributed) or not, and may sit directly in ``data_dir``,
in torchvision's layout ``data_dir/MNIST/raw/`` or in ``data_dir/mnist/``. The normalisation
constants are the customary training-set values 0.1307 / 0.3081.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glsverify.data.base import Dataset, Split
from glsverify.data.idx import read_idx
from glsverify.errors import DatasetError

MEAN = (0.1307,)
STD = (0.3081,)
CLASS_NAMES = tuple(str(digit) for digit in range(10))
IMAGE_SIZE = 28

# split -> (images file, labels file), without the optional ".gz"
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILE_NAMES: tuple[str, ...] = tuple(name for pair in FILES.values() for name in pair)


def candidate_dirs(data_dir: Path) -> list[Path]:
    """The folders, in order of preference, where the four files may be."""
    return [data_dir, data_dir / "MNIST" / "raw", data_dir / "mnist", data_dir / "mnist" / "MNIST" / "raw"]


def find_file(folder: Path, name: str) -> Path | None:
    """``name.gz`` or ``name`` in ``folder``, whichever exists (gzipped first)."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def locate(data_dir: Path) -> dict[str, Path]:
    """Map each of the four file names to its path, or explain which files are missing where."""
    best: tuple[int, Path, list[str]] | None = None
    for folder in candidate_dirs(data_dir):
        found = {name: find_file(folder, name) for name in FILE_NAMES}
        missing = [name for name, path in found.items() if path is None]
        if not missing:
            return {name: path for name, path in found.items() if path is not None}
        if best is None or len(missing) < len(best[2]):
            best = (len(FILE_NAMES) - len(missing), folder, missing)
    assert best is not None
    n_found, folder, missing = best
    if n_found == 0:
        looked = ", ".join(str(folder) for folder in candidate_dirs(data_dir))
        raise DatasetError(
            f"MNIST files not found (looked in {looked}); expected {', '.join(FILE_NAMES)} "
            "(optionally .gz); use --download to fetch them"
        )
    raise DatasetError(f"{folder}: incomplete MNIST, missing {', '.join(m + '[.gz]' for m in missing)}")


def read_split(images_path: Path, labels_path: Path) -> Split:
    """One split from its image and label files, with their shapes and labels checked."""
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
                           f"expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(f"{labels_path}: {labels.shape[0]} labels for the {images.shape[0]} "
                           f"images of {images_path.name}")
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DatasetError(f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is not a digit 0-9")
    return Split.from_pixels(images[:, None], labels, max_value=255)


def load_mnist(data_dir: Path) -> Dataset:
    """MNIST from ``data_dir`` (see the module docstring for the accepted layouts)."""
    paths = locate(Path(data_dir))
    splits = {split: read_split(paths[images], paths[labels])
              for split, (images, labels) in FILES.items()}
    return Dataset(
        name="mnist",
        input_shape=(1, IMAGE_SIZE, IMAGE_SIZE),
        n_classes=10,
        mean=MEAN,
        std=STD,
        class_names=CLASS_NAMES,
        train=splits["train"],
        test=splits["test"],
        source=str(paths[FILES["train"][0]].parent),
    )
