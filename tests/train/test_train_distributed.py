"""Two gloo processes on the CPU train the same PGPE run as one process: the population is sharded,
the final weights are identical, and only rank 0 writes the run directory."""

import json
import os
import socket

import torch
import torch.multiprocessing as mp

from glsverify.train.config import TrainConfig
from glsverify.train.trainer import run_training


def config_for(model, output):
    return TrainConfig(model=str(model), output=output, method="pgpe", relaxation="crown-ibp", eps=0.05,
                       batch_size=64, max_steps=4, population=12, pop_chunk=2, sigma=0.02, device="cpu",
                       eval_samples=40, eval_pgd_steps=3, eval_pgd_restarts=1)


def _worker(rank, world, port, model, run_dir, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    evaluated = []
    from glsverify.train import objective

    original = objective.TrainingObjective.losses

    def counting(self, members, *args, **kwargs):
        evaluated.append(members.shape[0])
        return original(self, members, *args, **kwargs)

    objective.TrainingObjective.losses = counting
    outcome = run_training(config_for(model, run_dir))
    torch.save({"theta": outcome.theta, "evaluated": evaluated, "has_summary": outcome.summary is not None},
               os.path.join(out_dir, f"rank{rank}.pt"))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_ranks_train_exactly_what_one_process_trains(tmp_path, mlp_path):
    reference = run_training(config_for(mlp_path, str(tmp_path / "single")))  # one thread, as the workers
    run_dir = tmp_path / "distributed"
    mp.spawn(_worker, args=(2, _free_port(), str(mlp_path), str(run_dir), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for result in results:
        assert torch.equal(result["theta"], reference.theta)
    # Each rank evaluated half of the 12 members per step, 2 at a time.
    assert [sum(r["evaluated"]) for r in results] == [4 * 6, 4 * 6] and max(results[0]["evaluated"]) == 2
    assert results[0]["has_summary"] and not results[1]["has_summary"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["certified_accuracy"] == reference.summary["certified_accuracy"]
    assert json.loads((run_dir / "config.json").read_text())["environment"]["world_size"] == 2
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4
