"""The plots, each a pure function from data to a PNG file (Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

RESULT_COLOURS = {"sat": "#d62728", "unsat": "#2ca02c", "timeout": "#ff7f0e", "unknown": "#bcbd22",
                  "error": "#9467bd"}


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def training_curves(records: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Losses, accuracies and eps over training steps (from metrics.jsonl records)."""
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, label in (("loss", "objective"), ("robust_loss", "robust loss"), ("natural_loss", "natural loss")):
        values = [r.get(key) for r in records]
        if any(v is not None for v in values):
            axes[0].plot(steps, [float("nan") if v is None else v for v in values], label=label)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    for key, label in (("train_accuracy", "natural accuracy (batch)"),
                       ("train_certified", "certified accuracy (batch)")):
        values = [r.get(key) for r in records]
        if any(v is not None for v in values):
            axes[1].plot(steps, [float("nan") if v is None else v for v in values], label=label)
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("accuracy")
    axes[1].legend()
    axes[2].plot(steps, [r.get("eps", float("nan")) for r in records], color="black", label="eps")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("eps (training)")
    axes[2].legend()
    fig.suptitle(title or "training curves")
    return _save(fig, path)


def certified_vs_eps(curves: dict[str, list[tuple[float, float]]], path: str | os.PathLike,
                     trained_eps: float | None = None, title: str = "") -> Path:
    """Certified accuracy against eps, one line per bound method (plus the natural/PGD accuracy lines
    when present under those keys)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        eps, acc = zip(*sorted(points)) if points else ((), ())
        ax.plot(eps, acc, marker="o", label=label)
    if trained_eps is not None:
        ax.axvline(trained_eps, color="grey", linestyle="--", label=f"training eps {trained_eps:g}")
    ax.set_xlabel("eps (L-inf, [0, 1] pixels)")
    ax.set_ylabel("accuracy on the test subset")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(title or "certified accuracy vs eps")
    return _save(fig, path)


def answer_distribution(results: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Counts of sat / unsat / timeout / unknown / error answers."""
    counts = Counter(r["result"] for r in results)
    names = [k for k in RESULT_COLOURS if counts.get(k)] or ["none"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(names, [counts.get(k, 0) for k in names], color=[RESULT_COLOURS.get(k, "grey") for k in names])
    for i, k in enumerate(names):
        ax.text(i, counts.get(k, 0), str(counts.get(k, 0)), ha="center", va="bottom")
    ax.set_ylabel("instances")
    ax.set_title(title or "verifier answers")
    return _save(fig, path)


def time_per_instance(results: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Time of each instance (bars coloured by answer) and the cactus curve of solved instances."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    times = [float(r["time_s"]) for r in results]
    axes[0].bar(range(len(results)), times, color=[RESULT_COLOURS.get(r["result"], "grey") for r in results])
    present = [k for k in RESULT_COLOURS if any(r["result"] == k for r in results)]
    axes[0].legend(handles=[Patch(color=RESULT_COLOURS[k], label=k) for k in present])
    axes[0].set_xlabel("instance")
    axes[0].set_ylabel("time (s)")
    axes[0].set_title("time per instance")
    solved = sorted(float(r["time_s"]) for r in results if r["result"] in ("sat", "unsat"))
    cumulative, total = [], 0.0
    for t in solved:
        total += t
        cumulative.append(total)
    axes[1].plot(range(1, len(solved) + 1), cumulative, marker=".")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set_xlabel("instances solved")
    axes[1].set_ylabel("cumulative time (s)")
    axes[1].set_title("cactus plot")
    fig.suptitle(title or "verifier time")
    return _save(fig, path)
