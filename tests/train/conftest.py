"""Shared fixtures: tiny digits networks written as ONNX files once per session, and the digits data."""

import pytest

from tests.train.nets import digits_cnn, digits_mlp


@pytest.fixture(scope="session")
def mlp_path(tmp_path_factory):
    return digits_mlp(tmp_path_factory.mktemp("nets") / "mlp.onnx", hidden=16, seed=0)


@pytest.fixture(scope="session")
def cnn_path(tmp_path_factory):
    return digits_cnn(tmp_path_factory.mktemp("nets") / "cnn.onnx", channels=(4, 8), seed=0)


@pytest.fixture(scope="session")
def digits():
    from glsverify.data.registry import load_dataset

    return load_dataset("digits")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These workloads are tiny: one intra-op thread is faster than two, and on a shared 2-core machine
    (or under pytest-xdist) more threads than free cores make torch's thread pool wait on itself."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
