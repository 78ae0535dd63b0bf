"""``glsverify models build|list``: write or list the zoo's standard architectures as ONNX files."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("models")
def command() -> None:
    """The model zoo (CNN3, CNN5, CNN7 for MNIST and CIFAR-10; MLP and CNN for 8x8 digits)."""


@command.command("build")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
              show_default=True, help="Folder to write <arch>_<dataset>.onnx into.")
@click.option("--large", is_flag=True, help="Also build CNN7 (about 17M parameters, 68 MB for CIFAR-10).")
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Build only this model (repeatable), e.g. cnn3_mnist; large ones included.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weight initialisation.")
def build(out_dir: Path, large: bool, only: tuple[str, ...], seed: int) -> None:
    """Write the zoo models (fixed seed, PyTorch default initialisation) atomically."""
    from rich.console import Console
    from rich.table import Table

    from glsverify.models.zoo import build_zoo

    paths = build_zoo(out_dir, include_large=large, only=list(only) or None, seed=seed)
    table = Table(title=f"Zoo models written to {out_dir}", title_justify="left")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for path in paths:
        table.add_row(path.name, f"{path.stat().st_size:,}")
    Console().print(table)


@command.command("list")
def list_models() -> None:
    """List the zoo's models, their input shapes and whether they are large."""
    from rich.console import Console
    from rich.table import Table

    from glsverify.models.zoo import DATASETS, ZOO

    table = Table(title_justify="left")
    for column in ("name", "arch", "dataset", "input", "large"):
        table.add_column(column)
    for entry in ZOO.values():
        shape = [1, *DATASETS[entry.dataset].shape]
        table.add_row(entry.name, entry.arch, entry.dataset, str(shape), "yes" if entry.large else "")
    Console().print(table)
