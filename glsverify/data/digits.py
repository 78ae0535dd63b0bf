"""scikit-learn's 8x8 digits: the embedded default dataset, which needs no download.

1797 grey-scale images with pixel values 0..16 (scaled here to [0, 1]) as [1, 8, 8], 10 classes.
The train/test split is fixed: per class, the samples are permuted by numpy's legacy
``RandomState(SPLIT_SEED)`` (whose stream numpy keeps stable across versions), and the first
samples of each class go to the test split. Each class gets its share of ``N_TEST`` = 360 test
samples by largest remainder, so the split is stratified: 1437 train / 360 test.
``MEAN``/``STD`` are the training split's pixel mean and standard deviation (population std,
in [0, 1] units); ``tests/data/test_digits.py`` recomputes them.
"""

from __future__ import annotations

import numpy as np

from glsverify.data.base import Dataset, Split

N_TEST = 360
SPLIT_SEED = 0
MEAN = (0.3058135710,)
STD = (0.3765731316,)
CLASS_NAMES = tuple(str(digit) for digit in range(10))


def stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_index, test_index)`` with every class represented in proportion.

    Class ``k`` with ``c_k`` samples gets ``n_test * c_k / N`` test samples, rounded by largest
    remainder (ties to the smaller class label) so that the counts add up to ``n_test``.
    """
    classes, counts = np.unique(labels, return_counts=True)
    quotas = n_test * counts / counts.sum()
    per_class = np.floor(quotas).astype(np.int64)
    shortfall = n_test - int(per_class.sum())
    by_remainder = np.argsort(-(quotas - per_class), kind="stable")
    per_class[by_remainder[:shortfall]] += 1
    rng = np.random.RandomState(seed)
    test_parts = []
    for label, take in zip(classes, per_class, strict=True):
        members = np.flatnonzero(labels == label)
        test_parts.append(members[rng.permutation(len(members))[:take]])
    test_index = np.sort(np.concatenate(test_parts))
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    return train_index, test_index


def load_digits_dataset() -> Dataset:
    """The digits dataset with its fixed stratified 1437/360 split."""
    from sklearn.datasets import load_digits  # imported lazily: sklearn is slow to import

    bunch = load_digits()
    pixels = bunch.images.reshape(-1, 1, 8, 8)
    labels = bunch.target
    train_index, test_index = stratified_split(labels, N_TEST, SPLIT_SEED)
    return Dataset(
        name="digits",
        input_shape=(1, 8, 8),
        n_classes=10,
        mean=MEAN,
        std=STD,
        class_names=CLASS_NAMES,
        train=Split.from_pixels(pixels[train_index], labels[train_index], max_value=16),
        test=Split.from_pixels(pixels[test_index], labels[test_index], max_value=16),
        source="sklearn.datasets.load_digits (bundled with scikit-learn)",
    )
