"""``glsverify demo``: the whole journey (what ``make demo`` runs); thin over :func:`glsverify.demo.run_demo`.

Exit codes: 0 done and consistent; 1 when the verifier's answers contradict the training evaluation
(a bug, reported loudly); 2 bad input (e.g. an --out folder the demo did not write).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("demo")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Output folder (a previous demo's folder is cleared and reused).")
@click.option("--quick", is_flag=True, help="Every stage in seconds (tiny training, 4 properties).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Torch CPU threads (one is fastest for this small network).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@click.pass_context
def command(ctx: click.Context, out: Path, quick: bool, threads: int, progress: bool | None) -> None:
    """Build the digits CNN, train it with PGPE + CROWN, export, write properties, certify, report."""
    import torch

    from glsverify.cli.ui import console
    from glsverify.cli.ui import progress as certify_progress
    from glsverify.demo import DemoHooks, DemoSettings, run_demo
    from glsverify.train.sinks import RichProgressSink

    if threads < 1:
        raise click.BadParameter("must be at least 1", param_hint="--threads")
    torch.set_num_threads(threads)
    show = sys.stderr.isatty() if progress is None else progress
    settings = DemoSettings.quick() if quick else DemoSettings()
    hooks = DemoHooks(say=console.print, stage=lambda title: console.rule(f"[bold]{title}", align="left"),
                      training_sinks=lambda: [RichProgressSink()] if show else [],
                      certify_progress=lambda total: certify_progress(total, enabled=show))
    console.print(f"[bold]glsverify demo[/]{' (quick)' if quick else ''}: train a digits CNN to be certifiably "
                  f"robust at eps {settings.eps:g}, then prove it; output in {out}/")
    result = run_demo(out, settings, hooks)
    _print_summary(result)
    if not result.consistency.ok:
        click.echo("Error: the verifier's answers contradict the training evaluation (see the consistency line "
                   "above). This is a bug in glsverify; please report it.", err=True)
        ctx.exit(1)


def _print_summary(result) -> None:
    from rich.table import Table

    from glsverify.cli.ui import console

    settings = result.settings
    table = Table(title=f"cnn_digits on digits, eps {settings.eps:g} (test split)", title_justify="left")
    table.add_column("model")
    table.add_column("natural", justify="right")
    table.add_column(f"PGD ({settings.pgd_steps}x{settings.pgd_restarts})", justify="right")
    table.add_column("certified (CROWN)", justify="right")
    table.add_column("n test", justify="right")
    for row in result.accuracies:
        table.add_row(row.stage, f"{row.natural:.3f}", f"{row.pgd:.3f}", f"{row.certified:.3f}", str(row.n_test))
    console.rule("[bold]summary", align="left")
    console.print(table)
    answers = ", ".join(f"{v} {k}" for k, v in result.answers.items())
    console.print(f"verifier on {result.consistency.properties} VNN-COMP properties: {answers}")
    style = "bold green" if result.consistency.ok else "bold red"
    console.print(f"[{style}]{result.consistency.line()}[/]")
    for image in result.images:
        console.print(f"plot:    {image}")
    console.print(f"report:  {result.report}")
    console.print(f"model:   {result.model}")
    console.print(f"VNN-COMP benchmark: {result.benchmark}/ (instances.csv, onnx/, vnnlib/; "
                  f"rerun: glsverify certify --instances {result.benchmark})")
    console.print(f"results: {result.results}/ (summary.csv and one VNN-COMP result file per instance)")
    times = result.times
    training = times.get("warmup", 0.0) + times.get("pgpe", 0.0)
    console.print(f"time:    {times['total']:.0f} s (training {training:.0f} s, certify "
                  f"{times.get('certify', 0.0):.0f} s, report {times.get('report', 0.0):.0f} s)")
