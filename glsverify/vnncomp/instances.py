"""VNN-COMP benchmark folders: ``instances.csv`` (onnx, vnnlib, timeout) and optional ground truth.

Paths in instances.csv are relative to the file's folder; a malformed row is reported with its line.
When a ``ground_truth.csv`` (this project's shared benchmark layout) lies beside it, each instance
carries its expected answer, so a run can count wrong answers.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from glsverify.errors import GlsverifyError
from glsverify.io_utils import atomic_write_text


@dataclass(frozen=True)
class Instance:
    onnx: Path
    vnnlib: Path
    timeout: float
    expected: str | None = None

    @property
    def name(self) -> str:
        """``<net>_<prop>``, as the benchmarks name their counterexample files."""
        return f"{_stem(self.onnx)}_{_stem(self.vnnlib)}"


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".onnx", ".vnnlib"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def read_instances(path: str | os.PathLike) -> list[Instance]:
    """Rows of an instances.csv; timeouts must be positive numbers and files must exist."""
    path = Path(path)
    if path.is_dir():
        path = path / "instances.csv"
    if not path.is_file():
        raise GlsverifyError(f"{path}: no such instances file")
    base = path.parent
    expected = _ground_truth(base)
    instances = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 3:
                raise GlsverifyError(f"{path}:{line}: expected 'onnx,vnnlib,timeout', got {','.join(row)!r}")
            onnx_rel, vnnlib_rel, timeout = (cell.strip() for cell in row[:3])
            try:
                seconds = float(timeout)
            except ValueError:
                raise GlsverifyError(f"{path}:{line}: timeout {timeout!r} is not a number") from None
            if not seconds > 0:
                raise GlsverifyError(f"{path}:{line}: timeout must be positive, got {timeout}")
            onnx_path, vnnlib_path = base / onnx_rel, base / vnnlib_rel
            for kind, file in (("onnx", onnx_path), ("vnnlib", vnnlib_path)):
                if not file.is_file():
                    raise GlsverifyError(f"{path}:{line}: {kind} file {file} does not exist")
            instances.append(Instance(onnx_path, vnnlib_path, seconds, expected.get((onnx_rel, vnnlib_rel))))
    if not instances:
        raise GlsverifyError(f"{path}: no instances")
    return instances


def _ground_truth(base: Path) -> dict[tuple[str, str], str]:
    path = base / "ground_truth.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {(row["onnx"], row["vnnlib"]): row["expected"] for row in csv.DictReader(handle)
                if row.get("onnx") and row.get("vnnlib") and row.get("expected")}


def write_instances(path: str | os.PathLike, rows: list[tuple[str, str, float]]) -> None:
    """Write an instances.csv (paths relative to its folder) atomically."""
    lines = [f"{onnx},{vnnlib},{timeout:g}" for onnx, vnnlib, timeout in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def is_wrong(result: str, expected: str | None) -> bool:
    """A decided answer that contradicts the ground truth."""
    return expected in ("sat", "unsat") and result in ("sat", "unsat") and result != expected
