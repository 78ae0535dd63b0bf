"""Counterexample validation in onnxruntime: the final arbiter of every ``sat`` answer.

A witness ``x`` is valid for a property iff

1. ``x`` lies in the input box of some case, each coordinate within ``box_tol`` (default ``1e-4``,
   absolute) of the box -- the rule the benchmarks' ground truth used ("inside the input box, within
   1e-4"; ``tool_results.csv`` marks a witness ``correct(tol-only)`` when it needed some tolerance).
   All 66 published witnesses in the benchmark folders also pass with ``box_tol=0``; and
2. the output that **onnxruntime** computes for ``x`` -- never the ``Y`` values a tool printed --
   satisfies every row of one of that case's polytopes: ``C @ y <= d + out_tol``. ``out_tol``
   defaults to 0: a strict check on onnxruntime's output (float32 for most models) cast to float64.

The network is run as the competition's checker runs it: the flat float64 ``x`` is cast to the model's
input type (float32 for almost all models) and reshaped to the ONNX input shape with batch 1, on the
CPU provider with default graph optimisations. Our own attacks should return points strictly inside
the box, so that their validity never rests on ``box_tol``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from glsverify.errors import InvalidModelError, ShapeMismatchError
from glsverify.spec.property import Property

_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}
_BATCH_CHUNK = 4096  # rows per onnxruntime call in run_batch


class OnnxRunner:
    """An ONNX network loaded once in onnxruntime (CPU), run on flat float vectors."""

    def __init__(self, onnx_path: str | os.PathLike, threads: int = 1):
        import onnxruntime as ort  # imported here: only validation needs it

        self.path = os.fspath(onnx_path)
        if not os.path.isfile(self.path):
            raise InvalidModelError(f"{self.path}: no such ONNX file")
        self._options = ort.SessionOptions()
        self._options.intra_op_num_threads = threads
        self._options.log_severity_level = 3  # old models warn about initializers listed as inputs
        try:
            self.session = ort.InferenceSession(self.path, self._options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InvalidModelError(f"{self.path}: onnxruntime cannot load it: {exc}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise InvalidModelError(f"{self.path}: expected one input, found {len(inputs)} ({names})")
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        shape = inputs[0].shape
        if any(not isinstance(d, int) for d in shape[1:]):
            raise InvalidModelError(f"{self.path}: input shape {shape} has unknown dimensions")
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in shape)
        if inputs[0].type not in _DTYPES:
            raise InvalidModelError(f"{self.path}: unsupported input type {inputs[0].type}")
        self.input_dtype = _DTYPES[inputs[0].type]
        self.n_inputs = int(np.prod(self.input_shape))
        self.n_outputs = self.run(np.zeros(self.n_inputs)).size
        self._batched = None  # None: not tried yet; False: the model cannot batch
        self._symbolic_batch = len(shape) >= 2 and not isinstance(shape[0], int)

    def run(self, x_flat: np.ndarray) -> np.ndarray:
        """The network's output for one flat input, flattened, as float64."""
        x = np.asarray(x_flat, dtype=np.float64).reshape(-1)
        if x.size != self.n_inputs:
            raise ShapeMismatchError("network input", (self.n_inputs,), x.shape)
        feed = {self.input_name: x.astype(self.input_dtype).reshape(self.input_shape)}
        out = self.session.run([self.output_name], feed)[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def run_batch(self, X: np.ndarray) -> np.ndarray:
        """Outputs ``[N, n_outputs]`` for inputs ``[N, n_inputs]``.

        Uses a copy of the model with a dynamic batch dimension when one can be made and agrees with
        :meth:`run` on the first rows (to float32 rounding); otherwise loops over :meth:`run`. Batched
        results may differ from :meth:`run` in the last bits, so validity is always decided by
        :meth:`run` (see :func:`check_counterexample`).
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ShapeMismatchError("batched network input", ("N", self.n_inputs), X.shape)
        if len(X) <= 1 or self._batched is False:
            return np.stack([self.run(x) for x in X]) if len(X) else np.zeros((0, self.n_outputs))
        if self._batched is None:
            self._batched = self._make_batched(X[:2])
            if self._batched is False:
                return self.run_batch(X)
        chunks = [self._run_rows(self._batched, X[k:k + _BATCH_CHUNK])
                  for k in range(0, len(X), _BATCH_CHUNK)]
        return np.concatenate(chunks)

    def _run_rows(self, session, rows: np.ndarray) -> np.ndarray:
        feed = rows.astype(self.input_dtype).reshape((len(rows),) + self.input_shape[1:])
        out = session.run([self.output_name], {self.input_name: feed})[0]
        return np.asarray(out, dtype=np.float64).reshape(len(rows), -1)

    def _make_batched(self, probe: np.ndarray):
        """A session that takes any batch, or False when the model does not allow one."""
        if len(self.input_shape) < 2 or (self.input_shape[0] != 1 and not self._symbolic_batch):
            return False  # e.g. a 1-D input [n]: its first dimension is not a batch
        try:
            session = self.session if self._symbolic_batch else self._dynamic_copy()
            got = self._run_rows(session, probe)
        except Exception:  # a Reshape to a fixed shape, for instance: fall back to the loop
            return False
        expected = np.stack([self.run(x) for x in probe])
        scale = max(1.0, float(np.max(np.abs(expected))))
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-6 * scale):
            return False
        return session

    def _dynamic_copy(self):
        import onnx
        import onnxruntime as ort

        model = onnx.load(self.path)
        for value in list(model.graph.input) + list(model.graph.output):
            if value.name in (self.input_name, self.output_name):
                dims = value.type.tensor_type.shape.dim
                if len(dims):
                    dims[0].ClearField("dim_value")
                    dims[0].dim_param = "batch"
        del model.graph.value_info[:]  # intermediate shapes were inferred for batch 1
        return ort.InferenceSession(model.SerializeToString(), self._options,
                                    providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class CounterexampleCheck:
    """The verdict on one witness; ``y`` is onnxruntime's output (empty if it could not be run)."""

    valid: bool
    reason: str
    y: np.ndarray
    case: int | None = None  # the case and polytope the witness falls in, when valid
    polytope: int | None = None


def check_counterexample(runner: OnnxRunner, prop: Property, x: np.ndarray, *, box_tol: float = 1e-4,
                         out_tol: float = 0.0) -> CounterexampleCheck:
    """Decide whether ``x`` violates ``prop`` on the network of ``runner`` (rules: module docstring)."""
    if runner.n_inputs != prop.n_inputs or runner.n_outputs != prop.n_outputs:
        raise ShapeMismatchError("network (inputs, outputs) vs property",
                                 (prop.n_inputs, prop.n_outputs), (runner.n_inputs, runner.n_outputs))
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size != prop.n_inputs:
        return CounterexampleCheck(False, f"x has {x.size} values but the property has "
                                          f"{prop.n_inputs} inputs", np.zeros(0))
    if not np.all(np.isfinite(x)):
        return CounterexampleCheck(False, "x has non-finite values", np.zeros(0))
    y = runner.run(x)
    containing = [k for k, case in enumerate(prop.cases) if case.box.contains(x, box_tol)]
    if not containing:
        return CounterexampleCheck(False, _outside_reason(prop, x, box_tol), y)
    best = (np.inf, None)
    for k in containing:
        for p, poly in enumerate(prop.cases[k].polytopes):
            if poly.holds(y, out_tol):
                return CounterexampleCheck(True, f"x is in the box of case {k} and onnxruntime's "
                                                 f"output satisfies its polytope {p}", y, k, p)
            excess = float(np.max(poly.C @ y - poly.d))
            if best[1] is None or excess < best[0]:
                best = (excess, (k, p))
    excess, (k, p) = best
    return CounterexampleCheck(False, f"onnxruntime's output satisfies no unsafe polytope of the "
                                      f"case(s) containing x; closest: case {k} polytope {p}, "
                                      f"a row exceeded by {excess:.3g}", y)


def _outside_reason(prop: Property, x: np.ndarray, box_tol: float) -> str:
    if not prop.cases:
        return "the property has no cases (its unsafe set is empty)"
    gaps = [np.maximum(case.box.lower - x, x - case.box.upper) for case in prop.cases]
    k = int(np.argmin([g.max() for g in gaps]))
    i = int(np.argmax(gaps[k]))
    return (f"x is outside every input box by more than {box_tol:g}; closest: case {k}, "
            f"X_{i} = {x[i]!r} is {gaps[k][i]:.3g} outside [{prop.cases[k].box.lower[i]!r}, "
            f"{prop.cases[k].box.upper[i]!r}]")
