"""Turning a float64 candidate into a counterexample that onnxruntime confirms.

The network runs in float32 in onnxruntime, so a candidate is rounded to float32 *inside* its case's
box (entries that round outside are stepped back in by one float32 ulp) and re-run there. Only a point
whose onnxruntime output satisfies an unsafe polytope of a box containing it (no input tolerance, no
output tolerance) is reported as ``sat``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glsverify.attack.validate import OnnxRunner, check_counterexample
from glsverify.spec.property import Property


@dataclass(frozen=True)
class Counterexample:
    x: np.ndarray  # flat input, float32 values stored as float64
    y: np.ndarray  # onnxruntime's flat output


def float32_inside(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Round ``x`` to float32 values that lie in ``[lower, upper]`` (when the box holds any)."""
    x32 = np.clip(np.asarray(x, dtype=np.float64), lower, upper).astype(np.float32)
    low = x32.astype(np.float64) < lower
    x32[low] = np.nextafter(x32[low], np.float32(np.inf))
    high = x32.astype(np.float64) > upper
    x32[high] = np.nextafter(x32[high], np.float32(-np.inf))
    return x32.astype(np.float64)


class WitnessChecker:
    """Validates candidates of one property against one ONNX file."""

    def __init__(self, runner: OnnxRunner, prop: Property):
        self.runner = runner
        self.prop = prop
        self.checked = 0

    def check(self, x: np.ndarray, case_index: int) -> Counterexample | None:
        box = self.prop.cases[case_index].box
        x32 = float32_inside(np.asarray(x).reshape(-1), box.lower, box.upper)
        self.checked += 1
        verdict = check_counterexample(self.runner, self.prop, x32, box_tol=0.0, out_tol=0.0)
        return Counterexample(x32, np.asarray(verdict.y, dtype=np.float64)) if verdict.valid else None
