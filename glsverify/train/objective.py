"""The training objective as a batched function of flat weight vectors: ``members [p, n] -> losses [p]``.

This is the one loss every method optimises. PGPE calls it (under ``torch.no_grad``) on chunks of its
population, RGS on its k perturbed copies with autograd, and gradient training on the single centre
``[1, n]``; the bound engine evaluates all ``p`` members in one batched pass through its population
axis (``compute_bounds(..., params={name: [p, ...]}, population=True)``), every member on the same
minibatch. Rows never interact, so a member's loss does not depend on which chunk it is in (up to the
floating-point association of a batched matmul).

Robust terms by relaxation (see :mod:`glsverify.train.config`): a bound relaxation bounds the
margins ``C @ z`` over the clipped eps-ball and takes the robust loss of the upper bounds; ``pgd``
takes the cross-entropy at a PGD point; ``mtl-ibp`` mixes IBP's robust loss with the PGD loss;
``none`` has no robust term. At eps = 0 every robust loss equals the natural loss and no bounds are
computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from glsverify.attack.pgd import linf_box, pgd_attack
from glsverify.bounds.interface import BoundOptions, compute_bounds
from glsverify.graph import Graph
from glsverify.train import losses as L
from glsverify.train.params import ParamLayout


@dataclass(frozen=True, eq=False)
class LossParts:
    """Per-member values ``[p]`` on one minibatch. ``certified`` is the fraction of the batch proved
    by the training relaxation (None when the robust term uses no bounds)."""

    loss: torch.Tensor
    robust: torch.Tensor
    natural: torch.Tensor
    accuracy: torch.Tensor
    certified: torch.Tensor | None


class TrainingObjective:
    """Mixed certified-training loss of a graph whose trained tensors are laid out by ``layout``."""

    def __init__(self, graph: Graph, layout: ParamLayout, relaxation: str, *, robust_weight: float = 1.0,
                 mtl_alpha: float = 0.5, pgd_steps: int = 8, bound_options: BoundOptions | Mapping | None = None):
        self.graph = graph
        self.layout = layout
        self.relaxation = relaxation.lower().replace("_", "-")
        self.robust_weight = robust_weight
        self.mtl_alpha = mtl_alpha
        self.pgd_steps = pgd_steps
        self.bound_options = bound_options
        self.n_classes = graph.nodes[-1].size

    def params(self, members: torch.Tensor) -> dict[str, torch.Tensor]:
        """Population tensors ``{name: [p, *shape]}`` (views of ``members [p, n]`` when contiguous)."""
        return self.layout.unflatten_population(members)

    def losses(self, members: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Mixed loss per member, ``[p]``."""
        return self.parts(members, x, y, eps, generator).loss

    def parts(self, members: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float,
              generator: torch.Generator | None = None) -> LossParts:
        """Every term per member on the minibatch ``x [B, *in]``, ``y [B]``."""
        params = self.params(members)
        logits = self.graph.forward(x, params, population=True)  # [p, B, K]
        natural = L.natural_loss(logits, y)
        accuracy = L.natural_accuracy(logits, y)
        if self.relaxation == "none":
            return LossParts(natural, natural, natural, accuracy, None)
        if eps <= 0:
            robust, certified = natural, accuracy
        elif self.relaxation == "pgd":
            robust, certified = self._adversarial(params, x, y, eps, members.shape[0], generator), None
        elif self.relaxation == "mtl-ibp":
            upper = self._bounds("ibp", params, x, y, eps)
            adversarial = self._adversarial(params, x, y, eps, members.shape[0], generator)
            robust = L.mtl_ibp_loss(L.robust_loss(upper), adversarial, self.mtl_alpha)
            certified = L.certified(upper).to(natural.dtype).mean(-1)
        else:
            upper = self._bounds(self.relaxation, params, x, y, eps)
            robust, certified = L.robust_loss(upper), L.certified(upper).to(natural.dtype).mean(-1)
        return LossParts(L.mix(natural, robust, self.robust_weight), robust, natural, accuracy, certified)

    def _bounds(self, method: str, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                eps: float) -> torch.Tensor:
        """Upper bounds ``[p, B, K-1]`` of the margins over the clipped eps-ball."""
        lower, upper = linf_box(x, eps)
        spec = L.margin_spec(y, self.n_classes, dtype=x.dtype)
        return compute_bounds(self.graph, lower, upper, spec, method=method, params=params, population=True,
                              want_lower=False, options=self.bound_options).upper

    def _adversarial(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, eps: float,
                     members: int, generator: torch.Generator | None) -> torch.Tensor:
        """Cross-entropy ``[p]`` at each member's own PGD point (members attacked in one batch)."""
        batch = x.shape[0]
        frozen = {k: v.detach() for k, v in params.items()}

        def model(points: torch.Tensor) -> torch.Tensor:  # [p*B, *in] -> [p*B, K], member-major
            out = self.graph.forward(points.view(members, batch, *x.shape[1:]), frozen, population=True)
            return out.reshape(members * batch, -1)

        tiled_x = x.repeat(members, *([1] * (x.dim() - 1)))
        tiled_y = y.repeat(members)
        x_adv, _ = pgd_attack(model, tiled_x, tiled_y, eps, steps=self.pgd_steps, loss="ce", generator=generator)
        logits = self.graph.forward(x_adv.view(members, batch, *x.shape[1:]), params, population=True)
        return L.natural_loss(logits, y)
