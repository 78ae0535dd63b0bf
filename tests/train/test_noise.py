"""Shared-seed directions: any slice rebuilds the same rows; streams differ by seed and step."""

import pytest
import torch

from glsverify.errors import ConfigError
from glsverify.train.noise import block_seed, direction_noise


@pytest.mark.parametrize("block", [1, 3, 8])
def test_any_slice_equals_rows_of_the_full_draw(block):
    full = direction_noise(5, 2, 0, 20, 7, block)
    for start, stop in [(0, 1), (3, 4), (2, 11), (7, 20), (19, 20), (5, 5)]:
        assert torch.equal(direction_noise(5, 2, start, stop, 7, block), full[start:stop])


def test_streams_depend_on_seed_and_step_and_are_standard_normal():
    a = direction_noise(1, 0, 0, 400, 50, 16)
    assert not torch.equal(a, direction_noise(2, 0, 0, 400, 50, 16))
    assert not torch.equal(a, direction_noise(1, 1, 0, 400, 50, 16))
    assert torch.equal(a, direction_noise(1, 0, 0, 400, 50, 16))
    assert abs(float(a.mean())) < 0.02 and abs(float(a.std()) - 1) < 0.02


def test_dtype_and_device_follow_the_request_from_the_same_float32_draw():
    a = direction_noise(3, 4, 0, 6, 9, 2)
    b = direction_noise(3, 4, 0, 6, 9, 2, device="cpu", dtype=torch.float64)
    assert a.dtype == torch.float32 and b.dtype == torch.float64
    assert torch.equal(a.double(), b)


def test_block_seed_is_stable_and_bounded():
    seeds = {block_seed(0, step, block) for step in range(20) for block in range(20)}
    assert len(seeds) == 400 and all(0 <= s < 2 ** 63 for s in seeds)
    assert block_seed(9, 9, 9) == block_seed(9, 9, 9)
    with pytest.raises(ConfigError):
        block_seed(-1, 0, 0)
    with pytest.raises(ConfigError):
        direction_noise(0, 0, 3, 2, 5, 1)
