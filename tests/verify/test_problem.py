"""A case of a property as tensors: joining cases keeps exactly their unsafe points."""

from __future__ import annotations

import torch

from glsverify.verify.problem import CaseProblem


def test_a_joined_case_is_unsafe_exactly_where_one_of_its_cases_is():
    generator = torch.Generator().manual_seed(1)  # points both in and outside the union
    box = torch.zeros(2, dtype=torch.float64)
    cases = [CaseProblem(0, box, box + 1, torch.randn(rows, 3, generator=generator, dtype=torch.float64),
                         torch.randn(rows, generator=generator, dtype=torch.float64), owner, int(owner.max()) + 1)
             for rows, owner in ((2, torch.tensor([0, 0])), (3, torch.tensor([0, 1, 1])), (1, torch.tensor([0])))]
    joined = CaseProblem.joined(cases)
    assert joined.n_polytopes == 4 and joined.owner.tolist() == [0, 0, 1, 2, 2, 3]
    y = torch.randn(500, 3, generator=generator, dtype=torch.float64)
    each = torch.stack([case.violation_margin(y) for case in cases]).min(0).values
    margin = joined.violation_margin(y)
    # the same margins up to rounding (the joined rows are multiplied in one matmul, whose summation
    # order the BLAS may choose differently), and unsafe at exactly the same points
    assert torch.allclose(margin, each, rtol=0.0, atol=1e-12)
    assert bool((each <= 0).any() and (each > 0).any())
    assert torch.equal(margin <= 0, each <= 0)
