"""Local-robustness properties: an L-infinity ball around one input, unsafe if another class wins.

This is what the MNIST/CIFAR VNN-COMP benchmarks encode in VNN-LIB, built directly from a sample so
that certification of a trained model needs no files.
"""

from __future__ import annotations

import numpy as np

from glsverify.errors import ConfigError
from glsverify.spec.property import Case, InputBox, OutputPolytope, Property


def local_robustness_property(x: np.ndarray, eps: float, label: int, n_classes: int,
                              lower: float = 0.0, upper: float = 1.0) -> Property:
    """The property "within ``eps`` of ``x`` (clipped to [lower, upper]) the class stays ``label``".

    Its box is ``clip(x - eps, x + eps)`` to the valid input range, flattened. Its unsafe set is the
    disjunction over ``i != label`` of ``y_i >= y_label``: one polytope per other class with the single
    row ``(e_label - e_i) @ y <= 0`` (ties count as unsafe, as in VNN-COMP).
    """
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(flat)):
        raise ConfigError("the input point has non-finite values")
    if not (np.isfinite(eps) and eps >= 0):
        raise ConfigError(f"eps must be a finite number >= 0, got {eps}")
    if not lower <= upper:
        raise ConfigError(f"the input range is empty: lower {lower} > upper {upper}")
    if n_classes < 2:
        raise ConfigError(f"a robustness property needs at least 2 classes, got {n_classes}")
    if not 0 <= label < n_classes:
        raise ConfigError(f"label {label} is outside 0..{n_classes - 1}")
    box_lower = np.clip(flat - eps, lower, upper)
    box_upper = np.clip(flat + eps, lower, upper)
    polytopes = []
    for other in range(n_classes):
        if other != label:
            row = np.zeros((1, n_classes))
            row[0, label], row[0, other] = 1.0, -1.0
            polytopes.append(OutputPolytope(row, np.zeros(1)))
    case = Case(InputBox(box_lower, box_upper), tuple(polytopes))
    return Property(flat.size, n_classes, (case,))
