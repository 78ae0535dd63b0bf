"""Device parametrisation shared by the ``test_cuda.py`` files.

``DEVICES`` runs a test on the CPU everywhere and, marked ``cuda``, on the GPU where one exists (skipped
without one), so the same assertion is exercised here and on a CUDA machine.
"""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
CUDA_MARKS = (pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device"))
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_MARKS)]
