"""Certified training with Gaussian Loss Smoothing (PGPE, RGS) and gradient baselines.

Entry points (``glsverify train`` is a thin CLI over :func:`~glsverify.train.trainer.run_training`)::

    from glsverify.train.config import TrainConfig
    from glsverify.train.trainer import run_training, resume_config
    outcome = run_training(TrainConfig(model="net.onnx", output="runs/a", method="pgpe", relaxation="crown",
                                       eps=0.1))
    outcome.evaluation.certified_accuracy, outcome.exit_code   # 0, or 130/143 after SIGINT/SIGTERM

Layers, each usable alone:

- :mod:`.losses`     margin specification C, robust / natural / mixed losses per member, MTL-IBP.
- :mod:`.objective`  the batched loss ``members [p, n] -> [p]`` through the bound engine's population axis.
- :mod:`.methods`    strategies (PGPE, RGS, grad) that turn a minibatch into an update.
- :mod:`.trainer`    the one loop: data order, eps ramp, sinks, checkpoints, signals, distributed.
- :mod:`.evaluate`   natural / PGD / certified accuracy on the test split.
- :mod:`.pgpe`, :mod:`.rgs`, :mod:`.optimizers`, :mod:`.noise`, :mod:`.params`, :mod:`.distributed`:
  the optimiser core, which knows nothing about networks.
"""
