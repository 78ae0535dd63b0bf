"""The verifier on a small convolutional network: the same answers whether CROWN re-bounds its
convolutions by patches or by dense rows, each answer checked (a counterexample in onnxruntime, an
unsat against samples of the box)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import glsverify.bounds.crown as crown
import glsverify.bounds.patches as patches
from glsverify.attack.validate import check_counterexample
from glsverify.verify.pipeline import VerifyOptions, verify
from tests.bounds.nets import Builder
from tests.verify.nets import threshold_property, violations, write_network


def small_cnn(seed: int):
    b = Builder((1, 6, 6), seed, dtype=torch.float32)
    b.normalise()
    b.conv(3, kernel=3, padding=1)
    b.activation()
    b.conv(4, kernel=3, stride=2, padding=1)
    b.activation()
    b.flatten()
    b.linear(3)
    return b.graph()


# (seed, box half-width, shift of the threshold): found by falsification; settled by CROWN, alpha-CROWN
# and by ReLU-split branch and bound
INSTANCES = [(0, 0.08, -0.5, "sat"), (0, 0.08, -1.0, "unsat"), (2, 0.2, -2.0, "unsat"), (1, 0.2, -1.0, "unsat"),
             (2, 0.2, -1.0, "unsat")]


@pytest.mark.parametrize("seed, eps, shift, expected", INSTANCES)
def test_patches_and_dense_rows_give_the_same_checked_answers(tmp_path, monkeypatch, seed, eps, shift, expected):
    path, graph, runner = write_network(small_cnn(seed), tmp_path)
    centre = np.random.default_rng(seed).random(36)
    lower, upper = np.clip(centre - eps, 0, 1), np.clip(centre + eps, 0, 1)
    prop = threshold_property(graph, lower, upper, np.array([1.0, -1.0, 0.0]), 0.0, seed, shift)
    monkeypatch.setattr(patches, "ALWAYS", True)
    calls = []
    original = crown.patch_refine
    monkeypatch.setattr(crown, "patch_refine", lambda *args: (calls.append(1), original(*args))[1])
    answers = {}
    for use in (False, True):
        monkeypatch.setattr(crown, "USE_PATCHES", use)
        result = verify(graph, runner, prop, VerifyOptions(timeout=30))
        answers[use] = result.result
        if result.result == "unsat":
            assert violations(graph, prop) == 0
        else:
            verdict = check_counterexample(runner, prop, result.counterexample.x, box_tol=0.0)
            assert verdict.valid, verdict.reason
    assert answers[True] == answers[False] == expected
    assert (len(calls) > 0) == (expected == "unsat")  # the bounds ran through patches where bounds ran
