"""``glsverify train``: certified training (PGPE, RGS or gradients) of an ONNX network; thin over
:func:`glsverify.train.trainer.run_training`.

Exit codes: 0 done; 2 bad input (one line on stderr); 130 / 143 stopped by SIGINT / SIGTERM after
writing a checkpoint (continue with ``--resume``).
"""

from __future__ import annotations

import sys

import click

from glsverify.train.config import TrainConfig, read_config_file


@click.command("train")
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Run directory: model.onnx, checkpoint.pt, metrics.jsonl, config.json, summary.json.")
@click.option("--dataset", help="digits | mnist | cifar10 (default digits).")
@click.option("--data-dir", help="Folder with the dataset files (not needed for digits).")
@click.option("--method", help="pgpe | rgs | grad (default pgpe).")
@click.option("--relaxation", help="ibp | crown-ibp | crown | deepz; with --method grad also none | pgd | mtl-ibp "
                                   "(default crown).")
@click.option("--eps", type=float, help="L-inf radius in [0, 1] pixel space (default 0.1).")
@click.option("--eps-ramp-end", type=float, help="Fraction of the steps after which eps reaches --eps, rising "
                                                 "linearly from 0 (default 0.5; 0 trains at --eps from the start, "
                                                 "as a fine-tune from --init should).")
@click.option("--epochs", type=int, help="Passes over the training split (default 10).")
@click.option("--batch-size", type=int, help="Minibatch size (default 128).")
@click.option("--population", type=int, help="PGPE population, even (default 64).")
@click.option("--sigma", type=float, help="Smoothing std: absolute, or relative with sigma_mode=relative (default 0.01).")
@click.option("--samples", type=int, help="RGS samples per step (default 4).")
@click.option("--optimizer", help="adam | clipup (default adam).")
@click.option("--lr", type=float, help="Learning rate (Adam) or step size (ClipUp); default depends on the method.")
@click.option("--robust-weight", type=float, help="w in (1-w) L_nat + w L_rob (default 1).")
@click.option("--seed", type=int, help="Seed of the data order, the noise and the attacks (default 0).")
@click.option("--device", help="auto | cpu | cuda (default auto).")
@click.option("--init", "init_path", type=click.Path(dir_okay=False),
              help="Warm start from an ONNX file or a training checkpoint of the same architecture.")
@click.option("--max-steps", type=int, help="Stop after this many updates (schedules span the shorter length).")
@click.option("--time-budget", type=float, help="Stop training after this many seconds, then evaluate.")
@click.option("--cert-method", help="Certification relaxation for the final evaluation (default crown; "
                                    "alpha-crown on request).")
@click.option("--eval-samples", type=int, help="Evaluate on the first N test samples (default: all).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML or JSON file with any option (command-line values override it).")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last checkpoint.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when stderr is a terminal).")
@click.pass_context
def command(ctx: click.Context, model, output, dataset, data_dir, method, relaxation, eps, eps_ramp_end, epochs,
            batch_size, population, sigma, samples, optimizer, lr, robust_weight, seed, device, init_path, max_steps,
            time_budget, cert_method, eval_samples, config_file, resume, progress) -> None:
    """Train MODEL.onnx to be certifiably robust at --eps and evaluate it on the test split."""
    from glsverify.train.sinks import RichProgressSink
    from glsverify.train.trainer import resume_config, run_training

    given = {"model": model, "output": output, "dataset": dataset, "data_dir": data_dir, "method": method,
             "relaxation": relaxation, "eps": eps, "eps_ramp_end": eps_ramp_end, "epochs": epochs, "batch_size": batch_size,
             "population": population, "sigma": sigma, "samples": samples, "optimizer": optimizer, "lr": lr,
             "robust_weight": robust_weight, "seed": seed, "device": device, "init": init_path,
             "max_steps": max_steps, "time_budget_s": time_budget, "cert_method": cert_method,
             "eval_samples": eval_samples}
    file_values = read_config_file(config_file) if config_file else {}
    if resume:
        config = resume_config(output, {**file_values, **given})
    else:
        config = TrainConfig.from_dict(file_values).updated(given)
    show_progress = sys.stderr.isatty() if progress is None else progress
    sinks = [RichProgressSink()] if show_progress else []
    outcome = run_training(config, resume=resume, sinks=sinks)
    if outcome.interrupted:
        click.echo(f"Interrupted by signal {outcome.signal} at step {outcome.step}/{outcome.total_steps}; "
                   f"checkpoint written to {output}. Continue with --resume.", err=True)
        ctx.exit(outcome.exit_code)
    if outcome.summary is not None and outcome.evaluation is not None:
        _print_summary(outcome)


def _print_summary(outcome) -> None:
    from rich.console import Console
    from rich.table import Table

    from glsverify.train.evaluate import format_table

    config = outcome.config
    click.echo(f"{config.method} / {config.relaxation} on {config.dataset}: {outcome.step} steps in "
               f"{outcome.summary['times']['train_s']:.1f} s of training")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in format_table(outcome.evaluation):
        table.add_row(name, value)
    Console().print(table)
    click.echo(f"Run directory: {config.output}")
