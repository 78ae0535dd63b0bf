"""``glsverify export``: a trained run (or checkpoint) to a checked ONNX file and/or a VNN-COMP folder;
thin over :mod:`glsverify.train.export` and :func:`glsverify.spec.generate.generate_benchmark`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from glsverify.data.registry import DATASET_NAMES
from glsverify.onnx.export import DEFAULT_OPSET

BENCHMARK_OPTIONS = ("eps", "count", "dataset", "data_dir", "seed", "only_correct", "timeout")


@click.command("export")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The ONNX file to write.")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ONNX opset (13 to 20).")
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The network the checkpoint was trained from [the run's input_model.onnx].")
@click.option("--vnncomp", "bench_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write a VNN-COMP benchmark folder (onnx/, vnnlib/, instances.csv) for the model.")
@click.option("--eps", type=float, default=None, help="With --vnncomp: L-inf radius [the training eps].")
@click.option("--count", type=int, default=None, help="With --vnncomp: number of properties [10].")
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="With --vnncomp: test samples from [the training dataset].")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="With --vnncomp: dataset folder [the training run's].")
@click.option("--seed", type=int, default=None, help="With --vnncomp: chooses the test samples [0].")
@click.option("--only-correct", is_flag=True, default=None, help="With --vnncomp: skip misclassified samples.")
@click.option("--timeout", type=float, default=None, help="With --vnncomp: per-instance timeout in "
                                                          "instances.csv [60].")
def command(source: Path, output: Path | None, opset: int, model: Path | None, bench_dir: Path | None,
            **benchmark) -> None:
    """Rebuild the network trained in SOURCE (a run folder or a checkpoint.pt) and export it.

    The file keeps the input model's input/output names and its input normalisation, so it takes raw
    [0, 1] pixels; it is written only after onnxruntime and onnx2torch agree with torch on it.
    """
    from glsverify.cli.ui import console
    from glsverify.train.export import export_trained, load_trained

    if output is None and bench_dir is None:
        raise click.UsageError("give -o FILE.onnx, --vnncomp BENCH_DIR, or both")
    given = [f"--{k.replace('_', '-')}" for k in BENCHMARK_OPTIONS if benchmark[k] is not None]
    if bench_dir is None and given:
        raise click.UsageError(f"{', '.join(given)} only apply with --vnncomp BENCH_DIR")
    trained = load_trained(source, model)
    with tempfile.TemporaryDirectory(prefix="glsverify-export-") as scratch:
        target = output if output is not None else Path(scratch) / f"{trained.source.name}.onnx"
        result = export_trained(trained.graph, target, opset=opset)
        if output is not None:
            console.print(f"wrote {result.path} (opset {result.opset}, input '{result.input_name}', output "
                          f"'{result.output_name}', step {trained.step}; max |onnxruntime - torch| "
                          f"{result.onnxruntime_max_abs_diff:.2g}, max |onnx2torch - torch| "
                          f"{result.onnx2torch_max_abs_diff:.2g})")
        if bench_dir is not None:
            _write_benchmark(trained, result.path, bench_dir, benchmark)


def _write_benchmark(trained, model_path: Path, bench_dir: Path, options: dict) -> None:
    from glsverify.cli.ui import console
    from glsverify.data import load_dataset
    from glsverify.spec.generate import generate_benchmark

    config = trained.config
    dataset = options["dataset"] or config.get("dataset") or "digits"
    data_dir = options["data_dir"] or (config.get("data_dir") if dataset == config.get("dataset") else None)
    eps = options["eps"] if options["eps"] is not None else config.get("eps")
    if eps is None:
        raise click.UsageError("the checkpoint records no eps; give --eps")
    data = load_dataset(dataset, data_dir)
    given = lambda key, default: default if options[key] is None else options[key]  # noqa: E731
    generated = generate_benchmark(model_path, data, float(eps), given("count", 10), bench_dir,
                                   seed=given("seed", 0), only_correct=given("only_correct", False),
                                   timeout=given("timeout", 60.0))
    correct = sum(g.label == g.predicted for g in generated)
    console.print(f"wrote {len(generated)} properties (eps {float(eps):g}, {correct} correctly classified) to "
                  f"{bench_dir}/ (instances.csv, onnx/{model_path.name}, vnnlib/)")
