"""CIFAR-10 (32x32 RGB, 10 classes) from the official python batches or an ERAN test CSV.

Sources, in order of preference:
1. the official ``cifar-10-batches-py`` folder (``data_batch_1`` .. ``data_batch_5``, ``test_batch``),
   given as ``data_dir`` itself, or found as ``data_dir/cifar-10-batches-py``, ``data_dir/cifar10``
   or ``data_dir/cifar10/cifar-10-batches-py``. The batches are pickles; they are read with
   :mod:`glsverify.data.safe_pickle`, which can only rebuild numpy arrays. Each row of ``data``
   holds 1024 red, then 1024 green, then 1024 blue values (channel-height-width order).
2. ERAN's ``cifar10_test.csv`` in one of the same folders: one image per line, the label, then
   3072 integers 0-255 in height-width-channel order. It holds test images only, so the train
   split is empty and the dataset's ``notes`` say so.
The normalisation constants are the customary ones, (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from glsverify.data.base import Dataset, Split
from glsverify.data.safe_pickle import restricted_loads
from glsverify.errors import DatasetError

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32
BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCH = "test_batch"
CSV_NAME = "cifar10_test.csv"


def candidate_dirs(data_dir: Path) -> list[Path]:
    """The folders, in order of preference, that may hold the batches or the CSV."""
    return [data_dir, data_dir / BATCH_FOLDER, data_dir / "cifar10", data_dir / "cifar10" / BATCH_FOLDER]


def _check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise DatasetError(f"{where}: label {labels[bad[0]]} at index {bad[0]} is not a class 0-9")
    return labels


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels [N, 3, 32, 32] uint8, labels [N] int64)`` from one official batch file."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error.strerror or error})") from error
    batch = restricted_loads(raw, str(path))
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DatasetError(f"{path}: the batch needs 'data' and 'labels' entries")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        got = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape [N, {PIXELS}], got {got}")
    try:
        label_array = np.asarray(labels)
    except (TypeError, ValueError):
        label_array = np.asarray([], dtype=object)
    if label_array.ndim != 1 or label_array.dtype.kind not in "iu":
        raise DatasetError(f"{path}: 'labels' must be a list of integers")
    if label_array.shape[0] != data.shape[0]:
        raise DatasetError(f"{path}: {label_array.shape[0]} labels for {data.shape[0]} images")
    return data.reshape(-1, *SHAPE), _check_labels(label_array.astype(np.int64), str(path))


def read_batches(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The concatenation of several batch files."""
    parts = [read_batch(folder / name) for name in names]
    return (np.concatenate([pixels for pixels, _ in parts]),
            np.concatenate([labels for _, labels in parts]))


def read_eran_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels [N, 3, 32, 32] uint8, labels [N] int64)`` from an ERAN-format CSV."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read as an ASCII CSV ({error})") from error
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != PIXELS + 1:
            raise DatasetError(f"{path}:{line_number}: expected {PIXELS + 1} comma-separated "
                               f"integers (label, then {PIXELS} pixels), got {len(fields)}")
        try:
            row = np.array([field.strip() for field in fields], dtype=np.int64)
        except ValueError:
            raise DatasetError(f"{path}:{line_number}: a field is not an integer") from None
        if row[0] < 0 or row[0] > 9:
            raise DatasetError(f"{path}:{line_number}: label {row[0]} is not a class 0-9")
        if row[1:].min() < 0 or row[1:].max() > 255:
            raise DatasetError(f"{path}:{line_number}: pixel values must lie in 0..255")
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no images in the file")
    table = np.stack(rows)
    pixels = table[:, 1:].astype(np.uint8).reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2)
    return pixels, table[:, 0]


def _empty_split() -> Split:
    return Split(torch.empty((0, *SHAPE), dtype=torch.float32), torch.empty(0, dtype=torch.int64))


def _dataset(train: Split, test: Split, source: Path, notes: tuple[str, ...] = ()) -> Dataset:
    return Dataset(name="cifar10", input_shape=SHAPE, n_classes=10, mean=MEAN, std=STD,
                   class_names=CLASS_NAMES, train=train, test=test, source=str(source), notes=notes)


def load_cifar10(data_dir: Path) -> Dataset:
    """CIFAR-10 from ``data_dir`` (see the module docstring for the accepted layouts)."""
    folders = candidate_dirs(Path(data_dir))
    batch_names = (*TRAIN_BATCHES, TEST_BATCH)
    for folder in folders:
        present = [name for name in batch_names if (folder / name).is_file()]
        if len(present) == len(batch_names):
            train = Split.from_pixels(*read_batches(folder, TRAIN_BATCHES), max_value=255)
            test = Split.from_pixels(*read_batches(folder, (TEST_BATCH,)), max_value=255)
            return _dataset(train, test, folder)
        if present:
            missing = [name for name in batch_names if name not in present]
            raise DatasetError(f"{folder}: incomplete CIFAR-10 batches, missing {', '.join(missing)}")
    for folder in folders:
        csv_path = folder / CSV_NAME
        if csv_path.is_file():
            test = Split.from_pixels(*read_eran_csv(csv_path), max_value=255)
            note = (f"train split is empty: {csv_path} (ERAN format) holds {len(test)} test images "
                    f"only; the full dataset needs the official {BATCH_FOLDER} folder (--download)")
            return _dataset(_empty_split(), test, csv_path, notes=(note,))
    raise DatasetError(
        f"CIFAR-10 not found (looked in {', '.join(str(folder) for folder in folders)}); expected "
        f"{BATCH_FOLDER} (data_batch_1..5, test_batch) or {CSV_NAME}; use --download to fetch it"
    )
