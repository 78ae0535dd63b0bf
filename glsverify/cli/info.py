"""``glsverify info MODEL.onnx [--json]``: what a model is and whether glsverify can bound it.

The report (shapes, op counts, parameters, unsupported nodes) comes from :func:`inspect_onnx`; a model
whose ops are all supported is then imported, so that a rule refusing a configuration (e.g. Conv1d)
also counts as unsupported, and the normalised layer kinds are shown. An unsupported model is a
report, not an error (exit 0); a file that is not a valid ONNX model exits with 2.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from glsverify.errors import UnsupportedOpError
from glsverify.graph import Graph
from glsverify.onnx.ops import ModelReport


def analyse(path: Path) -> tuple[ModelReport, Graph | None, str | None]:
    """(report, normalised graph or None, why the import refused it or None)."""
    from glsverify.onnx import import_onnx, inspect_onnx

    report = inspect_onnx(path)
    if not report.supported:
        return report, None, None
    try:
        return report, import_onnx(path), None
    except UnsupportedOpError as error:
        return dataclasses.replace(report, unsupported_nodes=list(error.nodes)), None, str(error)


def as_json(report: ModelReport, graph: Graph | None, refused: str | None) -> dict:
    data = report.as_json()
    if graph is not None:
        data["layers"] = [{"name": n.name, "kind": n.kind, "shape": list(n.shape)} for n in graph.nodes]
        data["layer_kinds"] = graph.kind_counts()
    if refused is not None:
        data["import_error"] = refused
    return data


def print_report(path: Path, report: ModelReport, graph: Graph | None, refused: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{path}[/bold]  opset {report.opset}, {report.parameters:,} parameters")
    tensors = Table(title="Inputs and outputs", title_justify="left")
    for column in ("", "name", "shape"):
        tensors.add_column(column)
    for role, infos in (("input", report.inputs), ("output", report.outputs)):
        for info in infos:
            tensors.add_row(role, info.name, str(info.as_json()["shape"]))
    console.print(tensors)
    ops = Table(title="ONNX operations", title_justify="left")
    ops.add_column("op type")
    ops.add_column("count", justify="right")
    ops.add_column("supported")
    blocked = set(report.unsupported)
    for op_type, count in sorted(report.ops.items()):
        ops.add_row(op_type, str(count), "[red]no[/red]" if op_type in blocked else "yes")
    console.print(ops)
    if report.supported:
        console.print("[green]supported[/green]: every operation on the data path can be bounded")
    else:
        console.print("[red]not supported[/red]: " + ", ".join(
            f"{op} (node '{name}')" for op, name in report.unsupported_nodes))
        if refused:
            console.print(refused, markup=False)
    if graph is not None:
        layers = Table(title="Normalised layers", title_justify="left")
        for column in ("#", "kind", "shape", "inputs", "name"):
            layers.add_column(column)
        for index, node in enumerate(graph.nodes):
            layers.add_row(str(index), node.kind, str(list(node.shape)),
                           ",".join(map(str, node.inputs)), node.name)
        console.print(layers)


@click.command("info")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json_flag", is_flag=True, help="Print one JSON object instead of tables.")
def command(model: Path, as_json_flag: bool) -> None:
    """Show a model's inputs, outputs, operations, parameters and whether it is supported."""
    report, graph, refused = analyse(model)
    if as_json_flag:
        click.echo(json.dumps(as_json(report, graph, refused), sort_keys=True))
    else:
        print_report(model, report, graph, refused)
