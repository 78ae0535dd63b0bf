"""The restricted unpickler rebuilds numpy arrays and nothing else."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from glsverify.data.safe_pickle import restricted_loads
from glsverify.errors import DatasetError
from tests.data.builders import python2_batch_pickle


class RunsCommand:
    """A classic malicious payload: unpickling it calls ``os.system(command)``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_official_layout_round_trips():
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    raw = python2_batch_pickle(data, [4, 9])
    batch = restricted_loads(raw, "batch")
    assert batch[b"labels"] == [4, 9] and np.array_equal(batch[b"data"], data)
    reference = pickle.loads(raw, encoding="bytes")  # our own bytes: safe to load unrestricted
    assert batch.keys() == reference.keys() and np.array_equal(reference[b"data"], data)


def test_plain_containers_need_no_globals():
    value = {b"a": [1, 2, (3, b"x")], "b": None, "c": 1.5}
    assert restricted_loads(pickle.dumps(value, protocol=4), "f") == value


def test_os_system_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    for protocol in (0, 2, 4):
        payload = pickle.dumps({"data": RunsCommand(f"touch {marker}")}, protocol=protocol)
        with pytest.raises(DatasetError, match=r"evil.pkl: refusing to load global (posix|os|nt)\.system"):
            restricted_loads(payload, "evil.pkl")
    assert not marker.exists()


def test_other_globals_and_object_arrays_are_refused():
    with pytest.raises(DatasetError, match="refusing to load global builtins.eval"):
        restricted_loads(pickle.dumps(CallsEval(), protocol=4), "f")
    with pytest.raises(DatasetError, match="refusing to load global"):
        restricted_loads(pickle.dumps(np.array([1, 2]), protocol=5), "f")  # numpy's _frombuffer path
    with pytest.raises(DatasetError, match="object-dtype"):
        restricted_loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4), "f")
    # bytes pickled by Python 3 at protocol 2 go through _codecs.encode, which is not allowed either
    with pytest.raises(DatasetError, match="_codecs.encode"):
        restricted_loads(pickle.dumps(b"abc", protocol=2), "f")


def test_corrupt_pickles_are_dataset_errors():
    raw = python2_batch_pickle(np.zeros((1, 3072), dtype=np.uint8), [0])
    for broken in (raw[:-40], b"not a pickle", b""):
        with pytest.raises(DatasetError, match="f: not a readable pickle"):
            restricted_loads(broken, "f")
