"""End-of-training evaluation on the test split: natural, PGD and certified accuracy at eps.

- natural: argmax of the logits equals the label.
- PGD: correct at the clean point and at the best point of a multi-restart margin attack in the
  clipped eps-ball (an empirical upper bound on robust accuracy).
- certified: every margin ``z_i - z_y`` bounded below zero by ``cert_method`` (CROWN by default,
  alpha-CROWN on request) over the clipped eps-ball. In float64 (the default, exact for float32
  weights) a bound must clear zero by :data:`~glsverify.bounds.interface.PROOF_MARGIN`, as in
  verification.

A certified sample that the attack broke would be a soundness bug; ``certified_but_attacked`` counts
them (it must be 0).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from glsverify.attack.pgd import linf_box, pgd_robust
from glsverify.bounds.interface import PROOF_MARGIN, compute_bounds
from glsverify.data.base import Split
from glsverify.graph import Graph
from glsverify.train.losses import margin_spec
from glsverify.train.rng import generator_for


@dataclass
class Evaluation:
    natural_accuracy: float
    pgd_accuracy: float
    certified_accuracy: float
    eps: float
    n_test: int
    cert_method: str
    pgd_steps: int
    pgd_restarts: int
    certified_but_attacked: int
    times: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Verdicts:
    """Per-sample outcomes ``[B]`` (bool): what :func:`evaluate_network` counts, sample by sample."""

    correct: torch.Tensor
    pgd_robust: torch.Tensor  # correct and not broken by the attack
    certified: torch.Tensor  # every margin bounded below zero by the certification relaxation
    times: dict[str, float] = field(default_factory=dict)


def sample_verdicts(graph: Graph, images: torch.Tensor, labels: torch.Tensor, eps: float, *,
                    cert_method: str = "crown", pgd_steps: int = 50, pgd_restarts: int = 3,
                    generator: torch.Generator | None = None, cert_dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> Verdicts:
    """Natural, PGD and certified verdicts of ``graph`` on one batch at L-inf radius ``eps``."""
    device = torch.device(device) if device is not None else graph.device
    model_graph = graph.to(device=device, dtype=torch.float32)
    cert_graph = graph.to(device=device, dtype=cert_dtype)
    threshold = -PROOF_MARGIN if cert_dtype == torch.float64 else 0.0
    model = lambda x: model_graph.forward(x)  # noqa: E731
    x, y = images.to(device), labels.to(device)
    times = {}
    start = time.perf_counter()
    with torch.no_grad():
        correct = model(x).argmax(dim=1) == y
    times["natural_s"] = time.perf_counter() - start

    start = time.perf_counter()
    robust = pgd_robust(model, x, y, eps, steps=pgd_steps, restarts=pgd_restarts,
                        generator=generator) if eps > 0 else correct
    times["pgd_s"] = time.perf_counter() - start

    start = time.perf_counter()
    if eps > 0:
        lower, upper = linf_box(x.to(cert_dtype), eps)
        spec = margin_spec(y, model_graph.nodes[-1].size, dtype=cert_dtype)
        bounds = compute_bounds(cert_graph, lower, upper, spec, method=cert_method, want_lower=False).upper
        proved = (bounds.detach() < threshold).all(dim=-1)
    else:
        proved = correct
    times["certify_s"] = time.perf_counter() - start
    return Verdicts(correct, robust, proved, times)


def evaluate_network(graph: Graph, split: Split, eps: float, *, cert_method: str = "crown",
                     pgd_steps: int = 50, pgd_restarts: int = 3, batch_size: int = 256, seed: int = 0,
                     cert_dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Evaluation:
    """Accuracies of ``graph`` (with its own weights) on ``split`` at L-inf radius ``eps``."""
    device = torch.device(device) if device is not None else graph.device
    n = len(split)
    counts = {"natural": 0, "pgd": 0, "certified": 0, "inconsistent": 0}
    times = {"natural_s": 0.0, "pgd_s": 0.0, "certify_s": 0.0}
    for index, (images, labels) in enumerate(split.batches(batch_size, shuffle=False)):
        verdicts = sample_verdicts(graph, images, labels, eps, cert_method=cert_method, pgd_steps=pgd_steps,
                                   pgd_restarts=pgd_restarts, generator=generator_for(seed, "eval-pgd", index),
                                   cert_dtype=cert_dtype, device=device)
        for key, value in verdicts.times.items():
            times[key] += value
        counts["natural"] += int(verdicts.correct.sum())
        counts["pgd"] += int(verdicts.pgd_robust.sum())
        counts["certified"] += int(verdicts.certified.sum())
        counts["inconsistent"] += int((verdicts.certified & ~verdicts.pgd_robust).sum())
    total = max(n, 1)
    return Evaluation(natural_accuracy=counts["natural"] / total, pgd_accuracy=counts["pgd"] / total,
                      certified_accuracy=counts["certified"] / total, eps=float(eps), n_test=n,
                      cert_method=cert_method, pgd_steps=pgd_steps, pgd_restarts=pgd_restarts,
                      certified_but_attacked=counts["inconsistent"], times=times)


def format_table(evaluation: Evaluation) -> list[tuple[str, str]]:
    """Rows (metric, value) for printing."""
    return [("natural accuracy", f"{evaluation.natural_accuracy:.4f}"),
            (f"PGD accuracy ({evaluation.pgd_steps} steps x {evaluation.pgd_restarts})", f"{evaluation.pgd_accuracy:.4f}"),
            (f"certified accuracy ({evaluation.cert_method})", f"{evaluation.certified_accuracy:.4f}"),
            ("eps", f"{evaluation.eps:g}"), ("test samples", str(evaluation.n_test))]
