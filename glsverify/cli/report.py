"""``glsverify report``: PNG plots and a markdown summary of a training run and/or verifier results."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, help="Output folder [FOLDER/report].")
@click.option("--eps-points", type=int, default=6, show_default=True, help="Points of the accuracy-vs-eps curve.")
@click.option("--eval-samples", type=int, default=200, show_default=True, help="Test samples per curve point.")
@click.option("--no-certify", is_flag=True, help="Skip re-running the bound engine for the eps curve.")
def command(folder: Path, out: Path | None, eps_points: int, eval_samples: int, no_certify: bool) -> None:
    """FOLDER: a training run (glsverify train -o), certify results (--results), or a folder holding both."""
    from glsverify.cli.ui import console
    from glsverify.report.builder import write_report

    if eps_points < 2:
        raise click.BadParameter("need at least 2 points", param_hint="--eps-points")
    report = write_report(folder, out, eps_points=eps_points, eval_samples=eval_samples, certify=not no_certify)
    console.print(f"report: {report.markdown}")
    for image in report.images:
        console.print(f"  plot: {image}")
