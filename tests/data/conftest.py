"""Fixtures for the dataset tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_data_dir() -> Path:
    """``$GLSVERIFY_SHARED/data`` (default ``<repo>/../shared/data``); skips the test when absent."""
    shared = Path(os.environ.get("GLSVERIFY_SHARED", REPO_ROOT.parent / "shared"))
    folder = shared / "data"
    if not folder.is_dir():
        pytest.skip(f"real dataset files not present ({folder})")
    return folder
