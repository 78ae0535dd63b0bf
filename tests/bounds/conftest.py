"""One intra-op thread for the bound-engine tests: on small shared CPUs, torch's default thread pool
makes the tiny tensor ops of these tests many times slower (measured 30x on a 2-core VM)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
