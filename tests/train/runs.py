"""A short real training run of the zoo's digits CNN, for tests that need a run folder (export, CLI)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from glsverify.train.config import TrainConfig
from glsverify.train.sinks import BaseSink
from glsverify.train.trainer import run_training

ZOO_MODEL = Path(__file__).resolve().parents[2] / "models" / "cnn_digits.onnx"


def short_run(folder: Path, steps: int = 20, eps: float = 0.05) -> Path:
    """``folder/run``: a few gradient-IBP steps from ``folder/cnn_digits.onnx`` (the weights move away
    from the input file's), evaluated on 8 test images; about two seconds on one thread."""
    model = folder / "cnn_digits.onnx"
    shutil.copyfile(ZOO_MODEL, model)
    config = TrainConfig(model=str(model), output=str(folder / "run"), method="grad", relaxation="ibp", eps=eps,
                         lr=1e-2, batch_size=32, max_steps=steps, device="cpu", eval_samples=8, eval_pgd_steps=2,
                         eval_pgd_restarts=1)
    torch.set_num_threads(1)
    run_training(config)
    return folder / "run"


class SignalAt(BaseSink):
    """Sends this process a signal when the given step is logged (as a user's Ctrl-C would)."""

    def __init__(self, step, signum):
        self.step, self.signum = step, signum

    def record(self, record):
        if record.step == self.step:
            os.kill(os.getpid(), self.signum)
