"""IDX parsing: the array comes back exactly, and every malformation is named."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from glsverify.data.idx import parse_idx, read_idx
from glsverify.errors import DatasetError
from tests.data.builders import idx_bytes


@settings(max_examples=40, deadline=None)
@given(array=arrays(np.uint8, st.tuples(st.integers(0, 5), st.integers(1, 4), st.integers(1, 4))))
def test_round_trip(array):
    assert np.array_equal(parse_idx(idx_bytes(array), 3, "f"), array)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_gzipped_or_raw(tmp_path, gz):
    labels = np.arange(10, dtype=np.uint8)
    data = idx_bytes(labels)
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(data) if gz else data)
    assert np.array_equal(read_idx(path, 1), labels)


def test_malformed_files_are_named_and_explained(tmp_path):
    good = idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))
    cases = {
        "short": (good[:3], "too short"),
        "magic": (b"\x00\x00\x08\x01" + good[4:], "bad magic number 0x00000801, expected 0x00000803"),
        "dtype": (b"\x00\x00\x0d\x03" + good[4:], "bad magic number 0x00000d03"),
        "header": (good[:10], "truncated header"),
        "truncated": (good[:-1], "truncated, the header promises 18 data bytes"),
        "trailing": (good + b"\x00\x00", "2 unexpected bytes"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DatasetError, match=message) as info:
            read_idx(path, 3)
        assert str(path) in str(info.value)


def test_truncated_gzip_and_missing_file(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((4, 5, 5), dtype=np.uint8)))[:-12])
    with pytest.raises(DatasetError, match=f"{path}: corrupt or truncated gzip"):
        read_idx(path, 3)
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "absent", 3)
