"""``glsverify certify``: verify VNN-LIB properties, write VNN-COMP result files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from glsverify.errors import GlsverifyError


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _property_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted([p for p in path.iterdir() if p.name.endswith((".vnnlib", ".vnnlib.gz"))], key=_natural_key)
        if not files:
            raise GlsverifyError(f"{path}: no .vnnlib files in this folder")
        return files
    if not path.is_file():
        raise GlsverifyError(f"{path}: no such property file or folder")
    return [path]


@click.command("certify")
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--vnnlib", "vnnlib", type=click.Path(path_type=Path), help="A .vnnlib file or a folder of them.")
@click.option("--instances", type=click.Path(path_type=Path), help="A VNN-COMP instances.csv (or its folder).")
@click.option("--timeout", type=float, default=None, help="Seconds per instance [60; instances.csv rows keep "
                                                           "their own unless this is given].")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), help="Folder for result files and "
                                                                                "summary.csv.")
@click.option("--result-file", type=click.Path(path_type=Path), help="Exact result file path (one instance).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: the GPU when one exists, except for networks with few inputs (input splitting, "
              "ACAS Xu), which run faster on the CPU.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="Only the first N instances.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads for the verifier [torch's default].")
@click.option("--no-milp", is_flag=True, help="Prove with sound bound propagation only: no HiGHS MILP stage "
              "(whose proofs rest on floating-point tolerances, widened by a margin).")
def command(model: Path | None, vnnlib: Path | None, instances: Path | None, timeout: float | None,
            results_dir: Path | None, result_file: Path | None, as_json: bool, device: str, seed: int,
            limit: int | None, threads: int | None, no_milp: bool) -> None:
    """Prove (unsat), refute (sat, with an onnxruntime-checked counterexample) or time out.

    Either MODEL with --vnnlib FILE_OR_DIR, or --instances PATH/instances.csv.
    """
    from glsverify.cli.ui import certify_table, progress
    from glsverify.verify.pipeline import VerifyOptions
    from glsverify.vnncomp.instances import Instance, read_instances
    from glsverify.vnncomp.runner import InProcessExecutor, WorkerExecutor, record, run_instances

    if instances is not None:
        if model is not None or vnnlib is not None:
            raise click.UsageError("give either --instances or MODEL with --vnnlib, not both")
        todo = read_instances(instances)
        if timeout is not None:
            todo = [Instance(i.onnx, i.vnnlib, timeout, i.expected) for i in todo]
    else:
        if model is None or vnnlib is None:
            raise click.UsageError("give MODEL and --vnnlib, or --instances")
        if not model.is_file():
            raise GlsverifyError(f"{model}: no such model file")
        todo = [Instance(model, prop, timeout or 60.0) for prop in _property_files(vnnlib)]
    if limit is not None:
        todo = todo[:limit]
    if result_file is not None and len(todo) != 1:
        raise click.UsageError("--result-file needs exactly one instance; use --results DIR for several")
    if threads is not None and threads < 1:
        raise click.BadParameter("must be at least 1", param_hint="--threads")
    options = VerifyOptions(seed=seed, device=_device(device), threads=threads)
    if no_milp:
        options.relu_split.milp = None

    def write_single(result) -> None:
        if result_file is not None:
            record(result, result_file)
        click.echo(f"{result.result} (hard time limit)", err=True)

    single = len(todo) == 1
    executor = InProcessExecutor(options, on_timeout=write_single) if single else WorkerExecutor(options)
    try:
        with progress(len(todo), enabled=not as_json) as advance:
            results = run_instances(todo, executor, results_dir, on_result=lambda i, r: advance(i, r))
    finally:
        executor.close()
    if result_file is not None:
        record(results[0], result_file)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in results], indent=2))
    else:
        certify_table(results, results_dir)
    if all(r.result == "error" for r in results):
        raise GlsverifyError(results[0].message)


def _device(choice: str) -> str:
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise GlsverifyError("--device cuda, but torch sees no CUDA device here (use --device cpu or auto)")
    return choice  # "auto" is settled per network by the verifier (verify.pipeline.resolve_device)
