"""Population sharding: chunk partitions, env-based init, and a 2-process gloo run that must equal
the single-process run bit for bit."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.errors import ConfigError
from glsverify.train.distributed import (
    choose_backend,
    evaluate_population,
    init_from_env,
    population_chunks,
    rank_chunks,
    shutdown,
)
from glsverify.train.optimizers import AdamConfig
from glsverify.train.pgpe import PGPEConfig, ask, pgpe_init, state_to_dict, tell

POPSIZE, CHUNK, STEPS = 22, 4, 5  # 6 chunks (4,4,4,4,4,2): 3 per rank with 2 ranks


def toy_loss(members: torch.Tensor) -> torch.Tensor:
    """Row-independent, non-smooth toy loss on [p, n] members."""
    return (members.abs() * torch.arange(1, members.shape[1] + 1, dtype=members.dtype)).sum(-1) \
        + torch.sin(3 * members).sum(-1)


def make_state():
    config = PGPEConfig(optimizer=AdamConfig(lr=0.05), sigma_lr=0.1, noise_block=3)
    return pgpe_init(torch.linspace(-1, 1, 12, dtype=torch.float64), 0.2, config, seed=17)


def run_pgpe(loss_fn, steps):
    state, history = make_state(), []
    for _ in range(steps):
        losses = evaluate_population(loss_fn, state, POPSIZE, chunk_size=CHUNK)
        history.append(losses)
        state = tell(state, losses)
    return state, torch.stack(history)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    context = init_from_env(device="cpu", timeout_s=60)
    evaluated = []

    def counting_loss(members):
        evaluated.append(members.shape[0])
        return toy_loss(members)

    try:
        state, history = run_pgpe(counting_loss, STEPS)
        torch.save({"state": state_to_dict(state), "history": history, "evaluated": evaluated,
                    "backend": context.backend, "world": context.world_size},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        shutdown(context)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_equal_the_single_process_run_bit_for_bit(tmp_path):
    reference_state, reference_history = run_pgpe(toy_loss, STEPS)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    shares = [sum(b - a for a, b in rank_chunks(POPSIZE, CHUNK, r, 2)) for r in range(2)]
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["backend"] == "gloo" and result["world"] == 2
        assert torch.equal(result["history"], reference_history)
        assert torch.equal(result["state"]["center"], reference_state.center)
        assert torch.equal(result["state"]["sigma"], reference_state.sigma)
        # Each rank evaluated only its own share of the population, chunk by chunk.
        assert sum(result["evaluated"]) == STEPS * shares[rank]
        assert max(result["evaluated"]) <= CHUNK


def test_single_process_evaluation_equals_the_loss_of_ask():
    state = make_state()
    expected = toy_loss(ask(state, POPSIZE))
    assert torch.equal(evaluate_population(toy_loss, state, POPSIZE), expected)
    assert torch.equal(evaluate_population(toy_loss, state, POPSIZE, chunk_size=CHUNK), expected)
    with pytest.raises(ConfigError, match="shape"):
        evaluate_population(lambda m: m.sum(), state, POPSIZE)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 9), st.integers(1, 5))
def test_rank_chunks_partition_the_population_in_order(popsize, chunk_size, world):
    chunks = population_chunks(popsize, chunk_size)
    assert chunks[0][0] == 0 and chunks[-1][1] == popsize
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert all(0 < stop - start <= chunk_size for start, stop in chunks)
    joined = [c for r in range(world) for c in rank_chunks(popsize, chunk_size, r, world)]
    assert joined == chunks


def test_init_from_env_without_torchrun_is_a_single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = init_from_env(device="cpu")
    assert (context.rank, context.world_size, context.backend) == (0, 1, None)
    assert context.is_main and context.device == torch.device("cpu")
    shutdown(context)  # nothing to end
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        init_from_env(device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="inconsistent"):
        init_from_env(device="cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        init_from_env(device="cpu")


def test_choose_backend():
    assert choose_backend("cpu") == "gloo"
    assert choose_backend(torch.device("cuda", 0)) == "nccl"
