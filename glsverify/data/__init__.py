"""Datasets: in-memory image tensors in [0, 1] pixel space, with their normalisation constants.

``load_dataset("digits" | "mnist" | "cifar10", data_dir=None, download=False)`` returns a
:class:`Dataset`; ``digits`` needs no files. Names are resolved lazily, so that
``from glsverify.data import DATASET_NAMES`` (e.g. for CLI choices) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Dataset": "glsverify.data.base",
    "Split": "glsverify.data.base",
    "DATASET_NAMES": "glsverify.data.registry",
    "default_data_dir": "glsverify.data.registry",
    "load_dataset": "glsverify.data.registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'glsverify.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
