"""``glsverify spec``: write a VNN-COMP benchmark folder of local-robustness properties."""

from __future__ import annotations

from pathlib import Path

import click

from glsverify.data.registry import DATASET_NAMES


@click.command("spec")
@click.argument("model", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default="digits", show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--eps", type=float, required=True, help="L-inf radius in [0, 1] pixel space.")
@click.option("--count", type=int, default=10, show_default=True, help="Number of properties.")
@click.option("--seed", type=int, default=0, show_default=True, help="Chooses the test samples.")
@click.option("--only-correct", is_flag=True, help="Skip samples the model misclassifies.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Per-instance timeout written "
                                                                             "to instances.csv.")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Benchmark folder.")
def command(model: Path, dataset: str, data_dir: Path | None, eps: float, count: int, seed: int,
            only_correct: bool, timeout: float, out_dir: Path) -> None:
    """Local-robustness VNN-LIB files, instances.csv and a copy of MODEL under onnx/."""
    from glsverify.cli.ui import console
    from glsverify.data import load_dataset
    from glsverify.spec.generate import generate_benchmark

    data = load_dataset(dataset, data_dir)
    generated = generate_benchmark(model, data, eps, count, out_dir, seed=seed, only_correct=only_correct,
                                   timeout=timeout)
    correct = sum(g.label == g.predicted for g in generated)
    console.print(f"wrote {len(generated)} properties (eps {eps:g}, {correct} correctly classified) to "
                  f"{out_dir}/ (instances.csv, onnx/, vnnlib/)")
