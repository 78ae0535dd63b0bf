"""Locating the real VNN-COMP benchmark folders, for the tests that are about those files.

``$GLSVERIFY_SHARED/benchmarks`` (default ``<repo>/../shared/benchmarks``); tests skip when absent.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("acasxu", "mnist_fc_2022", "test")


def benchmarks_root() -> Path:
    """The benchmarks folder, or ``pytest.skip`` when it is not present."""
    shared = Path(os.environ.get("GLSVERIFY_SHARED", REPO_ROOT.parent / "shared"))
    root = shared / "benchmarks"
    if not root.is_dir():
        pytest.skip(f"real benchmark files not present ({root})")
    return root


def instances(folder: Path) -> list[tuple[Path, Path]]:
    """The (onnx, vnnlib) pairs of a folder's instances.csv, as absolute paths."""
    with open(folder / "instances.csv", newline="") as handle:
        return [(folder / row[0].strip(), folder / row[1].strip()) for row in csv.reader(handle) if row]


def counterexample_instances(folder: Path) -> list[tuple[Path, Path, Path]]:
    """(counterexample file, onnx, vnnlib) for every ``counterexamples/<net>_<prop>.counterexample``."""
    by_name = {f"{onnx.stem}_{vnnlib.stem}.counterexample": (onnx, vnnlib)
               for onnx, vnnlib in instances(folder)}
    found = []
    for ce in sorted((folder / "counterexamples").glob("*.counterexample")):
        if ce.name not in by_name:
            raise AssertionError(f"{ce} matches no instance of {folder / 'instances.csv'}")
        found.append((ce, *by_name[ce.name]))
    return found
