"""Window tables reproduce torch's max pooling, with padding, dilation and ceil_mode."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify import layers as L
from glsverify.bounds.pooling import gather_windows, maxpool_winners, window_table


@settings(max_examples=40, deadline=None, derandomize=True)
@given(kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 1), dilation=st.integers(1, 2),
       ceil_mode=st.booleans(), height=st.integers(3, 7), width=st.integers(3, 7))
def test_window_max_equals_max_pool(kernel, stride, padding, dilation, ceil_mode, height, width):
    if 2 * padding > kernel or min(height, width) + 2 * padding < dilation * (kernel - 1) + 1:
        return
    attrs = {"kernel": (kernel, kernel), "stride": (stride, stride), "padding": (padding, padding),
             "dilation": (dilation, dilation), "ceil_mode": ceil_mode}
    x = torch.randn(2, 3, 2, height, width, dtype=torch.float64)
    y = L.maxpool(x, attrs)
    table = window_table((2, height, width), tuple(y.shape[2:]), attrs)
    got = gather_windows(x, table, -float("inf")).amax(-2).view_as(y)
    torch.testing.assert_close(got, y, rtol=0, atol=0)
    won = maxpool_winners(x, x, (2, height, width), tuple(y.shape[2:]), attrs)  # a point: always certain
    assert won.dominant.all()
    torch.testing.assert_close(x.flatten(-2).gather(-1, won.star).view_as(y), y, rtol=0, atol=0)
