"""Shared-seed Gaussian directions (the trick of Salimans et al. 2017).

Direction ``u_j`` of step ``t`` is a pure function of ``(seed, t, j, block_size, n)``: directions are
drawn in blocks of ``block_size`` rows, each block from its own CPU ``torch.Generator`` seeded by a
hash of ``(seed, t, block index)``. So any process can rebuild any direction locally without
communicating it, a shard never needs the whole ``[P, n]`` matrix, and the values do not depend on
the population size, the device or the world size. Draws are float32 on the CPU and then cast and
moved, so every device sees the same numbers.
"""

from __future__ import annotations

import hashlib
import struct

import torch

from glsverify.errors import ConfigError

_MAX_SEED = 2 ** 63


def block_seed(seed: int, step: int, block: int) -> int:
    """A 63-bit generator seed mixed from (seed, step, block) by BLAKE2b (stable across runs)."""
    for name, value in (("seed", seed), ("step", step), ("block", block)):
        if not 0 <= value < _MAX_SEED:
            raise ConfigError(f"noise {name} must be in [0, 2**63) (got {value})")
    digest = hashlib.blake2b(struct.pack("<QQQ", seed, step, block), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def direction_noise(seed: int, step: int, start: int, stop: int, n: int, block_size: int,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Directions ``u_start .. u_{stop-1}`` as a ``[stop - start, n]`` tensor of N(0, 1) entries.

    Whole blocks are always drawn (and trimmed), so a direction's value never depends on which
    slice asked for it.
    """
    if block_size <= 0 or n <= 0 or not 0 <= start <= stop:
        raise ConfigError(f"bad noise request: start={start}, stop={stop}, n={n}, block={block_size}")
    if start == stop:
        return torch.empty(0, n, device=device, dtype=dtype)
    out = torch.empty(stop - start, n, dtype=torch.float32)
    for block in range(start // block_size, (stop - 1) // block_size + 1):
        generator = torch.Generator(device="cpu")
        generator.manual_seed(block_seed(seed, step, block))
        first = max(start, block * block_size)
        last = min(stop, (block + 1) * block_size)
        if last - first == block_size:  # a whole block: draw straight into place
            out[first - start:last - start].normal_(generator=generator)
        else:
            rows = torch.randn(block_size, n, generator=generator, dtype=torch.float32)
            out[first - start:last - start] = rows[first - block * block_size:last - block * block_size]
    return out.to(device=device, dtype=dtype)
