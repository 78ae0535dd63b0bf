"""``glsverify bounds MODEL.onnx (--vnnlib PROP | --input X.npy --eps E) --method M [--json] [--float32]``.

Prints a lower and an upper bound per network output (``--input``: over the box
``clip(x +- eps, 0, 1)``, unclipped with ``--no-clip``) or per row of the property's C matrices
(``--vnnlib``: for every case, the rows of all its output polytopes). Bounds are computed in float64
unless ``--float32``. The work is done by :mod:`glsverify.bounds.problems`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from glsverify.errors import ConfigError

METHODS = ("ibp", "deepz", "crown", "deeppoly", "crown-ibp", "alpha-crown")


def load_property(path: Path, n_inputs: int, n_outputs: int):
    """Parse a VNN-LIB file (the parser module is imported only when needed)."""
    try:
        from glsverify.spec.vnnlib import parse_vnnlib
    except ImportError:
        raise ConfigError("this build has no VNN-LIB parser (glsverify.spec.vnnlib); use --input") from None
    return parse_vnnlib(path, n_inputs=n_inputs, n_outputs=n_outputs)


def load_input(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: not a readable .npy array ({error})") from None


def _floats(t) -> list[float]:
    return [float(v) for v in t.detach().cpu().tolist()]


@click.command("bounds")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--vnnlib", "vnnlib_path", type=click.Path(path_type=Path), help="A VNN-LIB property.")
@click.option("--input", "input_path", type=click.Path(path_type=Path), help="A raw-pixel input (.npy).")
@click.option("--eps", type=float, help="Half-width of the box around --input.")
@click.option("--no-clip", is_flag=True, help="Do not clip the --input box to [0, 1].")
@click.option("--method", type=click.Choice(METHODS), default="crown", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--float32", "use_float32", is_flag=True, help="Compute in float32 (default float64).")
def command(model: Path, vnnlib_path: Path | None, input_path: Path | None, eps: float | None, no_clip: bool,
            method: str, as_json: bool, use_float32: bool) -> None:
    """Bound a model's outputs over an input box or a VNN-LIB property."""
    import torch

    from glsverify.bounds.problems import bound_box, bound_cases, property_problems, robustness_box
    from glsverify.onnx import import_onnx

    if (vnnlib_path is None) == (input_path is None):
        raise click.UsageError("give exactly one of --vnnlib PROP or --input X.npy")
    if input_path is not None and eps is None:
        raise click.UsageError("--input needs --eps")
    if vnnlib_path is not None and (eps is not None or no_clip):
        raise click.UsageError("--eps and --no-clip go with --input, not --vnnlib")
    dtype = torch.float32 if use_float32 else torch.float64
    graph = import_onnx(model).to(dtype=dtype)
    n_outputs = graph.nodes[-1].size
    started = time.perf_counter()
    result: dict = {"model": str(model), "method": method, "dtype": str(dtype).replace("torch.", "")}
    if input_path is not None:
        lower, upper = robustness_box(load_input(input_path), graph.input_shape, eps, clip=not no_clip, dtype=dtype)
        bounds = bound_box(graph, lower, upper, method)
        result.update(source="input", input=str(input_path), eps=eps, clip=not no_clip,
                      lower=_floats(bounds.lower), upper=_floats(bounds.upper),
                      rows=[{"output": i} for i in range(n_outputs)])
    else:
        prop = load_property(vnnlib_path, int(np.prod(graph.input_shape)), n_outputs)
        problems = property_problems(prop, graph.input_shape, n_outputs, dtype)
        all_bounds = bound_cases(graph, problems, method)
        rows, lows, highs = [], [], []
        for problem, bounds in zip(problems, all_bounds):
            for r in range(problem.C.shape[1]):
                rows.append({"case": problem.case, "polytope": problem.polytope[r], "d": float(problem.d[r])})
            lows += _floats(bounds.lower)
            highs += _floats(bounds.upper)
        result.update(source="vnnlib", vnnlib=str(vnnlib_path), lower=lows, upper=highs, rows=rows)
    result["seconds"] = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps(result))
    else:
        _print_table(result)


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    what = "C row" if result["source"] == "vnnlib" else "output"
    table = Table(title=f"{result['method']} bounds ({result['dtype']}, {result['seconds']:.3f} s)",
                  title_justify="left")
    columns = ["case", "polytope", "row", "lower", "upper", "d"] if result["source"] == "vnnlib" else \
        ["output", "lower", "upper"]
    for column in columns:
        table.add_column(column, justify="right")
    for index, (row, lo, hi) in enumerate(zip(result["rows"], result["lower"], result["upper"])):
        if result["source"] == "vnnlib":
            table.add_row(str(row["case"]), str(row["polytope"]), str(index), f"{lo:.9g}", f"{hi:.9g}",
                          f"{row['d']:.9g}")
        else:
            table.add_row(str(row["output"]), f"{lo:.9g}", f"{hi:.9g}")
    if not result["rows"]:
        click.echo(f"no {what}s to bound")
    Console().print(table)
