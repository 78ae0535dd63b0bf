"""The in-memory dataset model every loader returns.

Images are kept in *raw pixel space*: float32 in [0, 1], shape [N, C, H, W]. Normalisation by
``mean``/``std`` is not applied here because the models embed it as their first layer, so that
perturbation radii and VNN-LIB input boxes are stated in pixel space. Labels are int64, shape [N].

Minibatches come from a plain index permutation (no DataLoader workers): the data already sits in
memory, and a seeded ``torch.Generator`` makes every epoch reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from glsverify.errors import ConfigError, DatasetError

SplitName = Literal["train", "test"]
SPLIT_NAMES: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True, eq=False)  # tensors have no boolean ==
class Split:
    """One split: ``images`` [N, C, H, W] float32 in [0, 1] and ``labels`` [N] int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.float32 or self.images.dim() != 4:
            raise DatasetError(
                f"split images must be float32 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise DatasetError(
                f"split labels must be int64 [{self.images.shape[0]}], got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )

    @classmethod
    def from_pixels(cls, pixels: np.ndarray, labels: np.ndarray, max_value: float) -> Split:
        """Build a split from integer pixels [N, C, H, W] in 0..``max_value`` and integer labels."""
        images = np.array(pixels, dtype=np.float32)  # a fresh, writable copy
        images /= np.float32(max_value)
        return cls(torch.from_numpy(images), torch.from_numpy(np.array(labels, dtype=np.int64)))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int) -> Split:
        """The first ``n`` samples in file order (e.g. "the first 100 test images" of a benchmark)."""
        _check_count(n)
        return Split(self.images[:n], self.labels[:n])

    def subset(self, n: int, seed: int = 0) -> Split:
        """``min(n, len)`` samples drawn without replacement by ``seed``, kept in file order."""
        _check_count(n)
        if n >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=generator)[:n].sort().values
        return Split(self.images[index], self.labels[index])

    def batches(
        self,
        batch_size: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images [B, C, H, W], labels [B])`` covering every sample once.

        With ``shuffle`` the order is a permutation drawn from ``generator`` (advanced, so successive
        epochs differ reproducibly) or from a fresh generator seeded by ``seed`` (default 0). Without
        ``shuffle`` the file order is kept. ``drop_last`` drops a final batch smaller than
        ``batch_size``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if seed is not None and generator is not None:
            raise ConfigError("pass either seed or generator to batches(), not both")
        n = len(self)
        if shuffle:
            if generator is None:
                generator = torch.Generator().manual_seed(0 if seed is None else seed)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            index = order[start:start + batch_size]
            yield self.images[index], self.labels[index]


@dataclass(frozen=True, eq=False)  # tensors have no boolean ==
class Dataset:
    """A labelled image dataset with its normalisation constants and both splits.

    ``mean``/``std`` have one entry per channel; ``notes`` records anything a user should know about
    where the data came from (e.g. "train split empty: only the ERAN test CSV was found").
    """

    name: str
    input_shape: tuple[int, int, int]
    n_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    train: Split
    test: Split
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        channels = self.input_shape[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DatasetError(f"{self.name}: mean/std need {channels} entries (one per channel)")
        if len(self.class_names) != self.n_classes:
            raise DatasetError(f"{self.name}: {len(self.class_names)} class names for "
                               f"{self.n_classes} classes")
        for split_name in SPLIT_NAMES:
            split = self.split(split_name)
            if tuple(split.images.shape[1:]) != tuple(self.input_shape):
                raise DatasetError(f"{self.name} {split_name}: images have shape "
                                   f"{tuple(split.images.shape[1:])}, expected {self.input_shape}")

    def split(self, name: str) -> Split:
        """The split called ``name`` ("train" or "test")."""
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        raise ConfigError(f"unknown split {name!r}; known splits: {', '.join(SPLIT_NAMES)}")

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Minibatches of one split; see :meth:`Split.batches`."""
        return self.split(split).batches(batch_size, seed=seed, generator=generator,
                                         shuffle=shuffle, drop_last=drop_last)

    def subset(self, n: int | None = None, seed: int = 0, *, n_test: int | None = None) -> Dataset:
        """A copy with at most ``n`` training and ``n_test`` test samples (None keeps a split whole).

        Each split is sampled independently without replacement by ``seed`` and kept in file order.
        """
        train = self.train if n is None else self.train.subset(n, seed)
        test = self.test if n_test is None else self.test.subset(n_test, seed)
        return replace(self, train=train, test=test)

    def normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` as float32 tensors of shape [C, 1, 1], ready to broadcast over images."""
        shape = (self.input_shape[0], 1, 1)
        return (torch.tensor(self.mean, dtype=torch.float32).reshape(shape),
                torch.tensor(self.std, dtype=torch.float32).reshape(shape))


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"sample count must be a non-negative integer, got {n!r}")
