"""Max pooling seen through bounds: which window element may win, and is the winner certain.

Shared by the maxpool backward rule (CROWN, CROWN-IBP, alpha-CROWN) and DeepZ. A window table maps
every (window element, output position) to a flat input position, or -1 for padding, computed from the
layer's attributes and output shape (so ``ceil_mode`` and dilation need no special cases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch


def window_table(in_shape: tuple[int, ...], out_shape: tuple[int, ...], attrs: Mapping,
                 device: torch.device | None = None) -> torch.Tensor:
    """``[k_h * k_w, H_out * W_out]`` flat input indices (``h * W + w``) of every window, -1 for padding."""
    _, height, width = in_shape
    _, out_h, out_w = out_shape
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["padding"]
    dh, dw = attrs.get("dilation", (1, 1))
    rows = (torch.arange(out_h) * sh - ph).view(1, out_h) + (torch.arange(kh) * dh).view(kh, 1)  # [kh, Ho]
    cols = (torch.arange(out_w) * sw - pw).view(1, out_w) + (torch.arange(kw) * dw).view(kw, 1)  # [kw, Wo]
    r = rows.view(kh, 1, out_h, 1)
    c = cols.view(1, kw, 1, out_w)
    valid = (r >= 0) & (r < height) & (c >= 0) & (c < width)
    index = torch.where(valid, r * width + c, torch.full_like(r * c, -1))
    return index.reshape(kh * kw, out_h * out_w).to(device)


def gather_windows(t: torch.Tensor, table: torch.Tensor, fill: float) -> torch.Tensor:
    """``t [..., C, H, W]`` -> ``[..., C, K, L]`` values of every window element (``fill`` at padding)."""
    flat = t.flatten(-2)
    safe = table.clamp(min=0)
    picked = flat[..., safe.flatten()].view(*flat.shape[:-1], *table.shape)
    return picked.masked_fill(table < 0, fill)


@dataclass
class MaxpoolWinners:
    """Per output neuron (``[P, B, C, L]``): the window element with the largest lower bound
    (as a flat input index), whether it certainly is the maximum, and the window's bounds."""

    star: torch.Tensor  # long, flat input index of the element with the largest lower bound
    dominant: torch.Tensor  # bool: its lower bound is >= every other element's upper bound
    lower: torch.Tensor  # max of the lower bounds (a lower bound of the output)
    upper: torch.Tensor  # max of the upper bounds (an upper bound of the output)
    unknown: torch.Tensor  # bool: a NaN bound in the window (no information)


def maxpool_winners(lower: torch.Tensor, upper: torch.Tensor, in_shape: tuple[int, ...],
                    out_shape: tuple[int, ...], attrs: Mapping) -> MaxpoolWinners:
    """Bounds of ``y = max over the window`` from input bounds ``[P, B, C, H, W]``."""
    table = window_table(in_shape, out_shape, attrs, lower.device)
    lo = gather_windows(lower, table, -float("inf"))  # [P, B, C, K, L]
    hi = gather_windows(upper, table, -float("inf"))
    unknown = (torch.isnan(lo) | torch.isnan(hi)).any(-2)
    best_lo, arg = lo.max(-2)  # [P, B, C, L]
    others_hi = hi.scatter(-2, arg.unsqueeze(-2), -float("inf")).amax(-2)
    star = table.gather(0, arg.flatten(0, -2)).view_as(arg)
    unknown = unknown | (star < 0)  # only when every real element's lower bound is -inf
    dominant = (best_lo >= others_hi) & ~unknown
    return MaxpoolWinners(star.clamp(min=0), dominant, best_lo, hi.amax(-2), unknown)
