"""Certified-training losses on population-shaped tensors.

Shapes: logits ``[P, B, K]``; margin upper bounds ``u [P, B, K-1]`` (one row per wrong class, from the
bound engine with the specification :func:`margin_spec`); every loss returns the per-member mean over
the batch, ``[P]``, so that one call serves a PGPE population (P members) and a plain network (P = 1).

- Robust loss (Mirman et al. 2018; Gowal et al. 2018): ``CE([0, u_1..u_{K-1}], 0)``
  = ``logsumexp([0, u])``: zero only when every wrong class is bounded far below the true one.
- Natural loss: ``CE(logits, y)``.
- Mixed: ``(1 - w) * natural + w * robust``.
- Certified: every ``u_i < 0``.
- MTL-IBP (De Palma et al. 2024, "Expressive losses for verified robustness"): the convex combination
  ``alpha * L_IBP + (1 - alpha) * L_adv`` of the IBP robust loss and the cross-entropy at a PGD point;
  the gradient baseline of this package (chosen over SABR because it needs no extra box bookkeeping
  and reuses the same two building blocks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glsverify.errors import ConfigError, ShapeMismatchError


def margin_spec(labels: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``C [B, K-1, K]``: for sample b, the rows ``e_i - e_{y_b}`` for every ``i != y_b`` in order.

    Bounding ``C @ z`` directly (rather than the logits, then subtracting) is tighter for every
    linear relaxation, because the subtraction is propagated through the network.
    """
    if labels.dim() != 1:
        raise ShapeMismatchError("labels", ("B",), tuple(labels.shape))
    if n_classes < 2:
        raise ConfigError(f"a margin specification needs at least 2 classes (got {n_classes})")
    batch = labels.shape[0]
    eye = torch.eye(n_classes, dtype=dtype, device=labels.device)
    others = torch.arange(n_classes, device=labels.device).expand(batch, n_classes)
    keep = others != labels.unsqueeze(1)
    wrong = others[keep].view(batch, n_classes - 1)  # [B, K-1] wrong class indices, ascending
    return eye[wrong] - eye[labels].unsqueeze(1)


def _check_population(t: torch.Tensor, what: str) -> None:
    if t.dim() != 3:
        raise ShapeMismatchError(what, ("P", "B", "K"), tuple(t.shape))


def robust_loss(upper: torch.Tensor) -> torch.Tensor:
    """Per-member robust loss ``[P]`` from margin upper bounds ``[P, B, K-1]``."""
    _check_population(upper, "margin upper bounds")
    zeros = upper.new_zeros(*upper.shape[:2], 1)
    return torch.logsumexp(torch.cat([zeros, upper], dim=-1), dim=-1).mean(dim=-1)


def natural_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-member cross-entropy ``[P]`` of ``logits [P, B, K]`` against ``labels [B]``."""
    _check_population(logits, "logits")
    members, batch, classes = logits.shape
    losses = F.cross_entropy(logits.reshape(members * batch, classes), labels.repeat(members), reduction="none")
    return losses.view(members, batch).mean(dim=1)


def natural_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-member fraction ``[P]`` of correct argmax predictions."""
    _check_population(logits, "logits")
    return (logits.argmax(dim=-1) == labels).to(logits.dtype).mean(dim=1)


def certified(upper: torch.Tensor) -> torch.Tensor:
    """``[..., B]`` bool: every margin upper bound is negative (the sample is proved robust)."""
    return (upper < 0).all(dim=-1)


def mix(natural: torch.Tensor, robust: torch.Tensor, robust_weight: float) -> torch.Tensor:
    """``(1 - w) * natural + w * robust``; a weight of exactly 0 or 1 ignores the other term (so an
    infinite bound cannot leak into a purely natural loss as ``0 * inf``)."""
    if not 0.0 <= robust_weight <= 1.0:
        raise ConfigError(f"robust weight must be in [0, 1] (got {robust_weight})")
    if robust_weight == 0.0:
        return natural
    if robust_weight == 1.0:
        return robust
    return (1.0 - robust_weight) * natural + robust_weight * robust


def mtl_ibp_loss(ibp_robust: torch.Tensor, adversarial: torch.Tensor, alpha: float) -> torch.Tensor:
    """MTL-IBP's robust term: ``alpha * L_IBP + (1 - alpha) * L_adv`` (``[P]`` each)."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"MTL-IBP alpha must be in [0, 1] (got {alpha})")
    return mix(adversarial, ibp_robust, alpha)
