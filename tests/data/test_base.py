"""Split and Dataset: validation, minibatches, subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.data.base import Dataset, Split
from glsverify.errors import ConfigError, DatasetError


def make_split(n: int, shape=(1, 2, 2)) -> Split:
    """Sample i has every pixel equal to i / 1000 and label i % 3, so samples are identifiable."""
    images = (torch.arange(n, dtype=torch.float32) / 1000).reshape(n, 1, 1, 1).expand(n, *shape)
    return Split(images.contiguous(), torch.arange(n) % 3)


def make_dataset(n_train: int = 10, n_test: int = 4) -> Dataset:
    return Dataset(name="toy", input_shape=(1, 2, 2), n_classes=3, mean=(0.5,), std=(0.25,),
                   class_names=("a", "b", "c"), train=make_split(n_train), test=make_split(n_test))


def sample_ids(images: torch.Tensor) -> list[int]:
    return [round(v * 1000) for v in images[:, 0, 0, 0].tolist()]


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 40), batch_size=st.integers(1, 12), seed=st.integers(0, 2**31 - 1),
       shuffle=st.booleans())
def test_batches_cover_every_sample_once(n, batch_size, seed, shuffle):
    split = make_split(n)
    batches = list(split.batches(batch_size, seed=seed, shuffle=shuffle))
    seen = [i for images, _ in batches for i in sample_ids(images)]
    assert sorted(seen) == list(range(n))
    assert all(len(labels) == batch_size for _, labels in batches[:-1])
    for images, labels in batches:  # labels travel with their images
        assert labels.tolist() == [i % 3 for i in sample_ids(images)]
    if not shuffle:
        assert seen == list(range(n))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), batch_size=st.integers(1, 12))
def test_drop_last_keeps_only_full_batches(n, batch_size):
    batches = list(make_split(n).batches(batch_size, seed=1, drop_last=True))
    assert len(batches) == n // batch_size
    assert all(len(labels) == batch_size for _, labels in batches)
    seen = [i for images, _ in batches for i in sample_ids(images)]
    assert len(set(seen)) == len(seen)


def test_batches_reproducible_by_seed_and_generator():
    split = make_split(50)
    order = lambda **kw: [sample_ids(x) for x, _ in split.batches(8, **kw)]  # noqa: E731
    assert order(seed=3) == order(seed=3)
    assert order(seed=3) != order(seed=4)
    assert order() == order(seed=0)
    generator = torch.Generator().manual_seed(7)
    epoch1, epoch2 = order(generator=generator), order(generator=generator)
    assert epoch1 != epoch2  # the generator advances between epochs...
    generator = torch.Generator().manual_seed(7)
    assert [order(generator=generator), order(generator=generator)] == [epoch1, epoch2]  # ...reproducibly
    assert order(seed=7) == epoch1


def test_batches_reject_bad_arguments():
    split = make_split(5)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="batch_size"):
            next(split.batches(bad))
    with pytest.raises(ConfigError, match="not both"):
        next(split.batches(2, seed=1, generator=torch.Generator()))


def test_subset_and_head():
    split = make_split(30)
    sub = split.subset(10, seed=5)
    ids = sample_ids(sub.images)
    assert len(sub) == 10 and ids == sorted(ids) and len(set(ids)) == 10
    assert sample_ids(split.subset(10, seed=5).images) == ids
    assert sample_ids(split.subset(10, seed=6).images) != ids
    assert sub.labels.tolist() == [i % 3 for i in ids]
    assert split.subset(100, seed=0) is split
    assert sample_ids(split.head(4).images) == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        split.subset(-1)


def test_dataset_subset_split_and_normalisation():
    data = make_dataset(10, 4)
    small = data.subset(3, seed=1, n_test=2)
    assert (len(small.train), len(small.test)) == (3, 2)
    assert small.name == data.name and small.mean == data.mean
    assert len(data.subset(3).test) == 4  # n_test=None keeps the test split whole
    assert data.split("test") is data.test
    with pytest.raises(ConfigError, match="train, test"):
        data.split("val")
    got = [sample_ids(x) for x, _ in data.batches("train", 4, seed=2)]
    assert got == [sample_ids(x) for x, _ in data.train.batches(4, seed=2)]
    mean, std = data.normalisation()
    assert mean.shape == (1, 1, 1) and std.dtype == torch.float32
    assert torch.allclose((data.train.images - mean) / std, (data.train.images - 0.5) / 0.25)


def test_from_pixels_scales_to_unit_interval():
    pixels = np.array([[[[0, 128], [255, 3]]]], dtype=np.uint8)
    split = Split.from_pixels(pixels, np.array([7]), max_value=255)
    assert split.images.dtype == torch.float32 and split.labels.dtype == torch.int64
    assert split.images.flatten().tolist() == pytest.approx([0, 128 / 255, 1, 3 / 255])
    assert split.images.is_contiguous()


def test_invalid_splits_and_datasets_are_refused():
    with pytest.raises(DatasetError, match="float32"):
        Split(torch.zeros(2, 1, 2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DatasetError, match="int64"):
        Split(torch.zeros(2, 1, 2, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DatasetError, match="expected"):
        Dataset(name="toy", input_shape=(1, 3, 3), n_classes=3, mean=(0.5,), std=(0.25,),
                class_names=("a", "b", "c"), train=make_split(2), test=make_split(2))
    with pytest.raises(DatasetError, match="mean/std"):
        Dataset(name="toy", input_shape=(1, 2, 2), n_classes=3, mean=(0.5, 0.5), std=(0.25,),
                class_names=("a", "b", "c"), train=make_split(2), test=make_split(2))
