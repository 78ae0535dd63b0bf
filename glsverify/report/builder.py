"""Build a report from a training run folder, a verifier results folder, or a folder holding both.

- Training run (``metrics.jsonl``, ``summary.json``, ``config.json``, ``model.onnx``): training curves,
  and certified accuracy against eps measured by re-running the bound engine at several eps on a test
  subset (with natural and PGD accuracy for reference).
- Verifier results (``summary.csv`` from ``glsverify certify --results``): the answer distribution and
  the time per instance.

Everything lands in ``<out>/`` (default ``<folder>/report``) with ``report.md`` embedding the PNGs.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from glsverify.errors import GlsverifyError
from glsverify.io_utils import atomic_write_text
from glsverify.report import plots


@dataclass
class Report:
    markdown: Path
    images: list[Path] = field(default_factory=list)


def find_sources(folder: Path) -> tuple[list[Path], list[Path]]:
    """Run folders and results folders in ``folder`` or its direct subfolders."""
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    runs = [p for p in candidates if (p / "metrics.jsonl").is_file()]
    results = [p for p in candidates if (p / "summary.csv").is_file()]
    return runs, results


def write_report(folder: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 eps_points: int = 6, eval_samples: int = 200, certify: bool = True) -> Report:
    folder = Path(folder)
    if not folder.exists():
        raise GlsverifyError(f"{folder}: no such folder")
    runs, results = find_sources(folder)
    if not runs and not results:
        raise GlsverifyError(f"{folder}: neither a training run (metrics.jsonl) nor verifier results "
                             "(summary.csv) here or in its subfolders")
    out = Path(out) if out is not None else folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / "report.md")
    sections = [f"# glsverify report: {folder.name}", ""]
    for run in runs:
        sections += _training_section(run, out, report, eps_points, eval_samples, certify)
    for result in results:
        sections += _results_section(result, out, report)
    atomic_write_text(report.markdown, "\n".join(sections) + "\n")
    return report


def read_metrics(run: Path) -> list[dict]:
    records = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a crash: everything before it still counts
        if isinstance(record, dict) and "step" in record and "loss" in record:
            records.append(record)
    return records


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)


def _training_section(run: Path, out: Path, report: Report, eps_points: int, eval_samples: int,
                      certify: bool) -> list[str]:
    records = read_metrics(run)
    prefix = run.name or "run"
    lines = [f"## Training run `{run}`", ""]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    if summary:
        lines += ["| natural | PGD | certified | eps | method | relaxation | test samples |",
                  "|---|---|---|---|---|---|---|",
                  f"| {summary.get('natural_accuracy', float('nan')):.3f} | {summary.get('pgd_accuracy', float('nan')):.3f} "
                  f"| {summary.get('certified_accuracy', float('nan')):.3f} | {summary.get('eps')} | "
                  f"{summary.get('method', '')} | {summary.get('relaxation', '')} | {summary.get('n_test', '')} |", ""]
    if records:
        image = plots.training_curves(records, out / f"{prefix}_training.png", f"training: {prefix}")
        report.images.append(image)
        lines += [f"![training curves]({_rel(image, out)})", ""]
    if certify and (run / "model.onnx").is_file() and config:
        curves = certified_accuracy_curve(run, config, eps_points, eval_samples)
        if curves:
            image = plots.certified_vs_eps(curves, out / f"{prefix}_certified_vs_eps.png",
                                           config.get("eps"), f"{prefix}: accuracy vs eps")
            report.images.append(image)
            lines += [f"![certified accuracy vs eps]({_rel(image, out)})", "",
                      "| eps | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
            grid = [e for e, _ in curves[next(iter(curves))]]
            for i, eps in enumerate(grid):
                lines.append(f"| {eps:.4g} | " + " | ".join(f"{curves[k][i][1]:.3f}" for k in curves) + " |")
            lines.append("")
    return lines


def certified_accuracy_curve(run: Path, config: dict, points: int, samples: int) -> dict[str, list]:
    """Natural, PGD and CROWN-certified accuracy of the run's exported model at several eps."""
    from glsverify.data import load_dataset
    from glsverify.onnx import import_onnx
    from glsverify.train.evaluate import evaluate_network

    eps = float(config.get("eps") or 0.0)
    if eps <= 0:
        return {}
    dataset = load_dataset(config.get("dataset", "digits"), config.get("data_dir"))
    split = dataset.test.head(min(samples, len(dataset.test)))
    graph = import_onnx(run / "model.onnx")
    grid = [eps * 2 * i / (points - 1) for i in range(points)]
    curves: dict[str, list] = {"natural": [], "PGD": [], "certified (CROWN)": []}
    for value in grid:
        result = evaluate_network(graph, split, value, pgd_steps=20, pgd_restarts=1)
        curves["natural"].append((value, result.natural_accuracy))
        curves["PGD"].append((value, result.pgd_accuracy))
        curves["certified (CROWN)"].append((value, result.certified_accuracy))
    return curves


def _results_section(folder: Path, out: Path, report: Report) -> list[str]:
    with open(folder / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    prefix = folder.name or "results"
    lines = [f"## Verifier results `{folder}`", ""]
    if not rows:
        return lines + ["(no instances)", ""]
    dist = plots.answer_distribution(rows, out / f"{prefix}_answers.png", f"answers: {prefix}")
    times = plots.time_per_instance(rows, out / f"{prefix}_times.png", f"time: {prefix}")
    report.images += [dist, times]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["result"]] = counts.get(row["result"], 0) + 1
    wrong = sum(1 for row in rows if row.get("wrong") == "yes")
    lines += [", ".join(f"{v} {k}" for k, v in sorted(counts.items())) +
              f"; {sum(float(r['time_s']) for r in rows):.1f} s in total" +
              (f"; **{wrong} wrong**" if any(r.get("expected") for r in rows) else ""), "",
              f"![answers]({_rel(dist, out)}) ![times]({_rel(times, out)})", "",
              "| instance | result | time (s) | method |", "|---|---|---|---|"]
    lines += [f"| {r['instance']} | {r['result']} | {float(r['time_s']):.2f} | {r.get('method', '')} |" for r in rows]
    return lines + [""]
