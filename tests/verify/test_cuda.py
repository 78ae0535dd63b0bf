"""The verifier on a CUDA device gives the CPU's answers on small hand-made instances (sat with an
onnxruntime-checked counterexample, unsat), through the API and through ``glsverify certify --device``
(the CPU variant of each test runs everywhere; the cuda variant only where a GPU exists)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from glsverify.attack.validate import check_counterexample
from glsverify.cli import cli
from glsverify.verify.pipeline import VerifyOptions, verify
from tests.devices import DEVICES
from tests.verify.nets import random_mlp, sat_and_unsat_folder, threshold_property, violations, write_network

# (seed, quantile, shift, expected): a sizeable unsafe share (sat), a property that holds by a margin (unsat)
INSTANCES = [(1, 0.5, 0.0, "sat"), (2, 0.02, 0.0, "sat"), (3, 0.0, -0.1, "unsat"), (4, 0.0, -0.02, None)]


def _instance(folder, seed, quantile, shift, n_in=4):
    path, graph, runner = write_network(random_mlp(seed, n_in, [12, 12], 3), folder)
    rng = np.random.default_rng(seed)
    centre = rng.random(n_in)
    lower, upper = np.clip(centre - 0.2, 0, 1), np.clip(centre + 0.2, 0, 1)
    prop = threshold_property(graph, lower, upper, rng.standard_normal(3), quantile, seed, shift)
    return path, graph, runner, prop


def _check(graph, runner, prop, result):
    assert result.result in ("sat", "unsat"), result
    if result.result == "unsat":
        assert violations(graph, prop) == 0
    else:
        verdict = check_counterexample(runner, prop, result.counterexample.x, box_tol=0.0)
        assert verdict.valid, verdict.reason


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("relu_split", [False, True])
@pytest.mark.parametrize("seed, quantile, shift, expected", INSTANCES)
def test_verifier_on_device_gives_the_cpu_answer(tmp_path, device, relu_split, seed, quantile, shift, expected):
    path, graph, runner, prop = _instance(tmp_path, seed, quantile, shift)
    options = dict(timeout=30, input_split_max_dims=0 if relu_split else 16)
    reference = verify(graph, runner, prop, VerifyOptions(device="cpu", **options))
    result = verify(graph, runner, prop, VerifyOptions(device=device, **options))
    _check(graph, runner, prop, reference)
    _check(graph, runner, prop, result)
    assert result.result == reference.result
    if expected is not None:
        assert result.result == expected


@pytest.mark.parametrize("device", DEVICES)
def test_certify_cli_on_device(tmp_path, device):
    path, props = sat_and_unsat_folder(tmp_path)
    answers = {}
    for name in ("easy_sat", "unsat"):
        run = CliRunner().invoke(cli, ["certify", str(path), "--vnnlib", str(props / f"{name}.vnnlib"),
                                       "--timeout", "30", "--device", device, "--json"])
        assert run.exit_code == 0, run.output
        (record,) = json.loads(run.stdout)
        answers[name] = record["result"]
    assert answers == {"easy_sat": "sat", "unsat": "unsat"}
