"""Population sharding over torch.distributed, kept out of both the loss and the optimiser.

Every rank holds the same PGPE state. The population is cut into chunks of ``chunk_size`` members
(global member order); rank r evaluates a contiguous run of chunks, rebuilding only its members
from the shared seed, and the scalar losses are all-gathered. A chunk holds the same members in the
same batch whatever the world size, so with a fixed ``chunk_size`` the gathered losses equal the
single-process ones bit for bit (for a loss whose rows do not interact), every rank then applies the
identical ``tell``, and the run equals the single-process run.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from glsverify.errors import ConfigError
from glsverify.train.pgpe import PGPEState, member_rows, num_directions

BatchedLoss = Callable[[torch.Tensor], torch.Tensor]  # members [p, n] -> losses [p]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size, the device it should compute on."""

    rank: int
    world_size: int
    local_rank: int
    backend: str | None  # None when running as a single process
    device: torch.device
    initialized_here: bool  # this call created the process group (and shutdown should end it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def choose_backend(device: torch.device | str) -> str:
    """NCCL for CUDA devices, gloo for everything else."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer (got {raw!r})") from None


def init_from_env(device: str | torch.device | None = None,
                  timeout_s: float = 1800.0) -> DistContext:
    """Join the process group described by torchrun's RANK, WORLD_SIZE and LOCAL_RANK.

    Without those variables (or with WORLD_SIZE=1) this is a single process and nothing is
    initialised. ``device`` defaults to ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; a
    bare ``"cuda"`` also becomes ``cuda:LOCAL_RANK``. MASTER_ADDR and MASTER_PORT come from the
    environment (torchrun sets them).
    """
    rank, world, local = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"inconsistent RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    if device is None:
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world == 1:
        return DistContext(0, 1, local, None, device, False)
    backend = choose_backend(device)
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local, dist.get_backend(),
                           device, False)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ConfigError(f"WORLD_SIZE={world} but {name} is not set (launch with torchrun)")
    dist.init_process_group(backend=backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank, world, local, backend, device, True)


def shutdown(context: DistContext) -> None:
    """End the process group if :func:`init_from_env` created it."""
    if context.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


# ---- sharding --------------------------------------------------------------------------------
def population_chunks(popsize: int, chunk_size: int) -> list[tuple[int, int]]:
    """Member ranges ``[start, stop)`` of ``chunk_size`` (the last may be shorter)."""
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1 (got {chunk_size})")
    return [(start, min(start + chunk_size, popsize)) for start in range(0, popsize, chunk_size)]


def rank_chunks(popsize: int, chunk_size: int, rank: int, world_size: int) -> list[tuple[int, int]]:
    """The contiguous run of chunks that ``rank`` evaluates (may be empty when chunks are few)."""
    chunks = population_chunks(popsize, chunk_size)
    count = len(chunks)
    return chunks[rank * count // world_size:(rank + 1) * count // world_size]


def _evaluate_chunks(loss_fn: BatchedLoss, state: PGPEState,
                     chunks: list[tuple[int, int]]) -> torch.Tensor:
    parts = []
    with torch.no_grad():
        for start, stop in chunks:
            losses = loss_fn(member_rows(state, start, stop))
            if losses.shape != (stop - start,):
                raise ConfigError(f"loss function returned shape {tuple(losses.shape)} for "
                                  f"{stop - start} members (expected [{stop - start}])")
            parts.append(losses.to(device=state.center.device, dtype=state.center.dtype))
    return torch.cat(parts) if parts else state.center.new_empty(0)


def evaluate_population(loss_fn: BatchedLoss, state: PGPEState, popsize: int,
                        chunk_size: int | None = None,
                        group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Losses ``[popsize]`` of ``ask(state, popsize)`` in the centre's dtype and device.

    ``loss_fn`` maps members ``[p, n]`` to losses ``[p]`` and is called under ``torch.no_grad``,
    ``chunk_size`` members at a time (the whole population, or each rank's share, if None). Under an
    initialised process group each rank evaluates only its chunks and all ranks receive all losses;
    pass the same explicit ``chunk_size`` everywhere for results identical to a single process.
    """
    num_directions(popsize)
    distributed = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size(group) if distributed else 1
    if world == 1:
        return _evaluate_chunks(loss_fn, state, population_chunks(popsize, chunk_size or popsize))
    rank = dist.get_rank(group)
    chunk_size = chunk_size or -(-popsize // world)
    shares = [rank_chunks(popsize, chunk_size, r, world) for r in range(world)]
    counts = [sum(stop - start for start, stop in share) for share in shares]
    local = _evaluate_chunks(loss_fn, state, shares[rank])
    comm_device = (torch.device("cuda", torch.cuda.current_device())
                   if dist.get_backend(group) == "nccl" else torch.device("cpu"))
    buffer = torch.full((max(counts),), float("nan"), dtype=state.center.dtype, device=comm_device)
    buffer[:counts[rank]] = local.to(comm_device)
    gathered = [torch.empty_like(buffer) for _ in range(world)]
    dist.all_gather(gathered, buffer, group=group)
    losses = torch.cat([part[:count] for part, count in zip(gathered, counts)])
    return losses.to(state.center.device)
