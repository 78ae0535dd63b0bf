"""Property generation: a VNN-COMP benchmark folder of local-robustness properties for a model.

As in the competition's generate_properties scripts, test samples are drawn reproducibly from a seed
(a permutation of the test split), optionally keeping only those the model classifies correctly. Each
sample gives one VNN-LIB file: the L-infinity ball of radius eps around it, clipped to [0, 1] in raw
pixel space, unsafe when another class scores at least as high as the true one. The folder holds
``onnx/`` (a copy of the model), ``vnnlib/`` and ``instances.csv``, and runs unchanged in
``glsverify certify --instances`` and in external verifiers.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.spec.robustness import local_robustness_property
from glsverify.spec.vnnlib import write_vnnlib
from glsverify.vnncomp.instances import write_instances


@dataclass(frozen=True)
class GeneratedProperty:
    index: int  # position in the test split
    label: int
    predicted: int
    path: Path


def generate_benchmark(model_path: str | os.PathLike, dataset, eps: float, count: int, out_dir: str | os.PathLike,
                       *, seed: int = 0, only_correct: bool = False, timeout: float = 60.0) -> list[GeneratedProperty]:
    """Write the benchmark folder; returns what was generated, in instances.csv order."""
    from glsverify.onnx import import_onnx

    if count < 1:
        raise ConfigError(f"count must be at least 1, got {count}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ConfigError(f"eps must be a finite number >= 0, got {eps}")
    if not timeout > 0:
        raise ConfigError(f"timeout must be positive, got {timeout}")
    graph = import_onnx(model_path)
    sample_size = int(np.prod(dataset.input_shape))
    if graph.nodes[0].size != sample_size:
        raise ShapeMismatchError(f"model input vs dataset '{dataset.name}' sample", graph.input_shape,
                                 dataset.input_shape)
    if graph.nodes[-1].size != dataset.n_classes:
        raise ShapeMismatchError(f"model outputs vs dataset '{dataset.name}' classes", (dataset.n_classes,),
                                 graph.output_shape)
    out = Path(out_dir)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "vnnlib").mkdir(parents=True, exist_ok=True)
    model_name = Path(model_path).name
    shutil.copyfile(model_path, out / "onnx" / model_name)

    test = dataset.test
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).tolist()
    generated: list[GeneratedProperty] = []
    for index in order:
        if len(generated) == count:
            break
        image, label = test.images[index], int(test.labels[index])
        with torch.no_grad():
            predicted = int(graph.forward(image.reshape(1, *graph.input_shape)).reshape(-1).argmax())
        if only_correct and predicted != label:
            continue
        prop = local_robustness_property(image.numpy().reshape(-1), eps, label, dataset.n_classes)
        path = out / "vnnlib" / f"{dataset.name}_{index}_eps{eps:g}.vnnlib"
        write_vnnlib(prop, path)
        generated.append(GeneratedProperty(index, label, predicted, path))
    if len(generated) < count:
        raise ConfigError(f"only {len(generated)} of the {count} requested test samples qualify"
                          + (" (the model misclassifies the rest)" if only_correct else ""))
    write_instances(out / "instances.csv",
                    [(f"onnx/{model_name}", f"vnnlib/{g.path.name}", timeout) for g in generated])
    return generated
