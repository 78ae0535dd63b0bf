"""Flat parameter vectors and their named views.

The optimisers (PGPE, RGS, Adam, ClipUp) see one flat vector ``theta [n]`` and populations
``[P, n]``; networks see named weight tensors. :class:`ParamLayout` is the only bridge between the
two, so the optimisers never learn what a network is. Named views of a flat vector or population
share its storage, so a loss function can read a population without copying it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from glsverify.errors import ConfigError, ShapeMismatchError


@dataclass(frozen=True)
class Segment:
    """One named tensor's slice ``[start, stop)`` of the flat vector."""

    name: str
    shape: tuple[int, ...]
    start: int
    stop: int

    @property
    def numel(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ParamLayout:
    """The order, names and shapes of the tensors packed into a flat parameter vector."""

    segments: tuple[Segment, ...]

    @staticmethod
    def from_shapes(shapes: Mapping[str, tuple[int, ...] | torch.Size]) -> "ParamLayout":
        """Layout of ``{name: shape}`` in the mapping's iteration order."""
        segments, offset = [], 0
        for name, shape in shapes.items():
            shape = tuple(int(s) for s in shape)
            size = math.prod(shape)
            segments.append(Segment(name, shape, offset, offset + size))
            offset += size
        if not segments:
            raise ConfigError("a parameter layout needs at least one tensor")
        return ParamLayout(tuple(segments))

    @staticmethod
    def from_named(named: Mapping[str, torch.Tensor]) -> "ParamLayout":
        """Layout of a dict of tensors, e.g. ``dict(module.named_parameters())``."""
        return ParamLayout.from_shapes({name: tuple(t.shape) for name, t in named.items()})

    @property
    def numel(self) -> int:
        """n, the length of the flat vector."""
        return self.segments[-1].stop

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise ConfigError(f"no parameter named '{name}' in the layout (have: {', '.join(self.names)})")

    # ---- single vector ------------------------------------------------------------------------
    def flatten(self, named: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Pack ``{name: tensor[*shape]}`` into a new flat ``[n]`` tensor (layout order)."""
        self._check_names(named)
        parts = []
        for seg in self.segments:
            tensor = named[seg.name]
            if tuple(tensor.shape) != seg.shape:
                raise ShapeMismatchError(f"parameter '{seg.name}'", seg.shape, tuple(tensor.shape))
            parts.append(tensor.reshape(-1))
        return torch.cat(parts)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views ``{name: tensor[*shape]}`` into a flat ``[n]`` tensor (no copy)."""
        if flat.dim() != 1 or flat.shape[0] != self.numel:
            raise ShapeMismatchError("flat parameter vector", (self.numel,), tuple(flat.shape))
        return {seg.name: flat[seg.start:seg.stop].view(seg.shape) for seg in self.segments}

    # ---- population ---------------------------------------------------------------------------
    def flatten_population(self, named: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Pack ``{name: tensor[P, *shape]}`` into a new ``[P, n]`` population matrix."""
        self._check_names(named)
        sizes = {int(t.shape[0]) if t.dim() > 0 else -1 for t in named.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise ConfigError("every tensor of a population needs the same leading population axis")
        (pop,) = sizes
        parts = []
        for seg in self.segments:
            tensor = named[seg.name]
            if tuple(tensor.shape) != (pop, *seg.shape):
                raise ShapeMismatchError(f"population of '{seg.name}'", (pop, *seg.shape),
                                         tuple(tensor.shape))
            parts.append(tensor.reshape(pop, -1))
        return torch.cat(parts, dim=1)

    def unflatten_population(self, population: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: tensor[P, *shape]}`` from a ``[P, n]`` matrix; views when its rows are contiguous."""
        if population.dim() != 2 or population.shape[1] != self.numel:
            raise ShapeMismatchError("population matrix", (-1, self.numel), tuple(population.shape))
        pop = population.shape[0]
        out = {}
        for seg in self.segments:
            block = population[:, seg.start:seg.stop]
            try:
                out[seg.name] = block.view(pop, *seg.shape)
            except RuntimeError:  # rows not contiguous in memory: fall back to a copy
                out[seg.name] = block.reshape(pop, *seg.shape)
        return out

    # ---- per-segment values -------------------------------------------------------------------
    def segment_ids(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``[n]`` long tensor: the index of the segment each coordinate belongs to."""
        counts = torch.tensor([s.numel for s in self.segments], device=device)
        return torch.repeat_interleave(torch.arange(len(self.segments), device=device), counts)

    def expand_per_segment(self, values: torch.Tensor | list[float]) -> torch.Tensor:
        """Broadcast one value per segment ``[S]`` to the flat ``[n]`` vector."""
        values = torch.as_tensor(values)
        if values.shape != (len(self.segments),):
            raise ShapeMismatchError("per-segment values", (len(self.segments),), tuple(values.shape))
        counts = torch.tensor([s.numel for s in self.segments], device=values.device)
        return torch.repeat_interleave(values, counts)

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"names": list(self.names), "shapes": [list(s.shape) for s in self.segments]}

    @staticmethod
    def from_dict(data: Mapping) -> "ParamLayout":
        if set(data) != {"names", "shapes"} or len(data["names"]) != len(data["shapes"]):
            raise ConfigError("a parameter layout record needs matching 'names' and 'shapes' lists")
        return ParamLayout.from_shapes(dict(zip(data["names"], (tuple(s) for s in data["shapes"]))))

    def _check_names(self, named: Mapping[str, torch.Tensor]) -> None:
        if set(named) != set(self.names):
            missing = sorted(set(self.names) - set(named))
            extra = sorted(set(named) - set(self.names))
            raise ConfigError(f"parameter names do not match the layout (missing: {missing}, "
                              f"unexpected: {extra})")


def relative_sigma(layout: ParamLayout, theta: torch.Tensor, scale: float,
                   floor: float = 1e-3) -> torch.Tensor:
    """Per-coordinate sigma ``[n]`` with ``sigma = scale * max(std(W), floor)`` for each tensor W.

    This is CTBench's per-layer knob (sigma relative to each weight tensor's spread), used as RGS's
    noise and as PGPE's initial sigma. The std is the population std (no Bessel correction), so a
    one-element tensor has std 0; ``floor`` keeps tensors with no spread (zero-initialised biases,
    scalars) perturbed, because PGPE divides by sigma.
    """
    if scale <= 0 or floor <= 0:
        raise ConfigError(f"relative sigma needs scale > 0 and floor > 0 (got {scale}, {floor})")
    if theta.dim() != 1 or theta.shape[0] != layout.numel:
        raise ShapeMismatchError("flat parameter vector", (layout.numel,), tuple(theta.shape))
    stds = torch.stack([theta[s.start:s.stop].detach().std(correction=0) for s in layout.segments])
    return layout.expand_per_segment(scale * stds.clamp_min(floor))
