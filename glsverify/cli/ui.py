"""Rich output shared by the commands: progress bars, result tables, summaries."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

RESULT_STYLE = {"sat": "bold red", "unsat": "bold green", "timeout": "yellow", "unknown": "yellow",
                "error": "bold magenta"}


@contextmanager
def progress(total: int, enabled: bool = True) -> Iterator:
    """A progress bar over instances on stderr; yields ``advance(instance, result)``."""
    if not enabled:
        yield lambda *_: None
        return
    bar = Progress(TextColumn("[bold]certify"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[last]}"), console=err_console, transient=True)
    with bar:
        task = bar.add_task("certify", total=total, last="")

        def advance(instance, result) -> None:
            style = RESULT_STYLE.get(result.result, "")
            bar.update(task, advance=1, last=f"{instance.name}: [{style}]{result.result}[/] {result.time_s:.1f}s")

        yield advance


def certify_table(results: list, results_dir: Path | None = None) -> None:
    """Per-instance table and a summary line (with wrong answers when ground truth is known)."""
    table = Table(title="glsverify certify")
    table.add_column("property")
    table.add_column("network")
    table.add_column("result")
    table.add_column("time (s)", justify="right")
    table.add_column("method")
    has_truth = any(r.expected for r in results)
    if has_truth:
        table.add_column("expected")
    for r in results:
        style = RESULT_STYLE.get(r.result, "")
        row = [Path(r.vnnlib).name, Path(r.onnx).name, f"[{style}]{r.result}[/]", f"{r.time_s:.2f}",
               r.method or (r.message[:40] if r.message else "")]
        if has_truth:
            row.append((r.expected or "") + (" [bold red]WRONG[/]" if r.wrong else ""))
        table.add_row(*row)
    console.print(table)
    counts = Counter(r.result for r in results)
    total_time = sum(r.time_s for r in results)
    parts = [f"{counts.get(k, 0)} {k}" for k in ("sat", "unsat", "timeout", "unknown", "error") if counts.get(k)]
    line = f"{len(results)} instance(s): " + ", ".join(parts) + f"; {total_time:.1f} s in total"
    if has_truth:
        wrong = sum(r.wrong for r in results)
        line += f"; [bold {'red' if wrong else 'green'}]{wrong} wrong[/]"
    console.print(line)
    if results_dir is not None:
        console.print(f"results: {results_dir}/ (summary.csv)")
