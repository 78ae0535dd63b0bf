"""Training checkpoints: written atomically, read back with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, ints, floats, strings, lists and dicts::

    format        "glsverify.train-checkpoint/1"
    method        "pgpe" | "rgs" | "grad"
    method_state  the method's state dict (PGPE: pgpe.state_to_dict; others: theta + optimizer state)
    theta         the current weights [n] (PGPE: the centre) -- what a warm start reads
    layout        ParamLayout.to_dict() of theta (tensor names and shapes, in layer order)
    step          completed updates
    elapsed_s     training time so far
    rng           the counters that select every random draw (see glsverify.train.rng): the data
                  order is a function of (seed, epoch), a step's draws of (seed, step)
    config        the resolved TrainConfig as a dict
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from glsverify.errors import ConfigError
from glsverify.io_utils import atomic_save

FORMAT = "glsverify.train-checkpoint/1"
FILENAME = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (with the format tag) to ``path`` via a temporary file and ``os.replace``."""
    data = {"format": FORMAT, **payload}
    atomic_save(path, lambda handle: torch.save(data, handle))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights only: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ConfigError(f"{path} is not a readable training checkpoint: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a glsverify training checkpoint (format "
                          f"{data.get('format') if isinstance(data, dict) else None!r}, expected {FORMAT!r})")
    return data
