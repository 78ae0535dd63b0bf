"""Fixtures for tests that read the real VNN-COMP benchmark files (skipped where they are absent)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """``$GLSVERIFY_SHARED``, defaulting to ``<repo>/../shared``."""
    return Path(os.environ.get("GLSVERIFY_SHARED", REPO.parent / "shared"))


def benchmark_onnx_files() -> list[Path]:
    """Every benchmarks/*/onnx/*.onnx under the shared folder (empty when it is absent)."""
    return sorted((shared_dir() / "benchmarks").glob("*/onnx/*.onnx"))
