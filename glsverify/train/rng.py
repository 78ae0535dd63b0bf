"""Random streams derived from the run's seed, so that no generator state has to be carried around.

Every random draw of a training run (the data order of an epoch, a step's RGS perturbations, a step's
PGD starts) comes from a fresh CPU ``torch.Generator`` seeded by ``derived_seed(seed, purpose, index)``.
Resuming therefore needs only the counters (epoch, step), which the checkpoint stores, and the draws do
not depend on the device, the world size, or on how often something else consumed randomness.
"""

from __future__ import annotations

import hashlib
import struct

import torch

from glsverify.errors import ConfigError


def derived_seed(seed: int, purpose: str, index: int) -> int:
    """A 63-bit seed mixed from ``(seed, purpose, index)`` by BLAKE2b (stable across runs and versions)."""
    if not 0 <= seed < 2 ** 63 or not 0 <= index < 2 ** 63:
        raise ConfigError(f"seed and index must be in [0, 2**63) (got {seed}, {index})")
    digest = hashlib.blake2b(struct.pack("<QQ", seed, index) + purpose.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator_for(seed: int, purpose: str, index: int) -> torch.Generator:
    """A CPU generator for draw number ``index`` of stream ``purpose``."""
    return torch.Generator(device="cpu").manual_seed(derived_seed(seed, purpose, index))


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The sample order ``[n]`` of an epoch (a permutation that depends only on seed and epoch)."""
    return torch.randperm(n, generator=generator_for(seed, "data-order", epoch))
