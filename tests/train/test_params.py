"""ParamLayout: flat <-> named round trips, views, populations, per-segment values, relative sigma."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.train.params import ParamLayout, relative_sigma


def _named(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv1.weight": torch.randn(16, 1, 5, 5, generator=g),
        "conv1.bias": torch.randn(16, generator=g),
        "fc.weight": torch.randn(10, 32, generator=g),
        "fc.bias": torch.zeros(10),
    }


def test_flatten_unflatten_round_trip_and_order():
    named = _named()
    layout = ParamLayout.from_named(named)
    flat = layout.flatten(named)
    assert flat.shape == (16 * 25 + 16 + 320 + 10,) == (layout.numel,)
    seg = layout.segment("fc.weight")
    assert torch.equal(flat[seg.start:seg.stop], named["fc.weight"].reshape(-1))
    back = layout.unflatten(flat)
    assert list(back) == list(named)
    for name in named:
        assert torch.equal(back[name], named[name])


def test_unflatten_gives_views_into_the_flat_vector():
    layout = ParamLayout.from_named(_named())
    flat = torch.zeros(layout.numel)
    views = layout.unflatten(flat)
    flat[layout.segment("conv1.bias").start] = 7.0
    assert views["conv1.bias"][0] == 7.0
    views["fc.bias"][3] = -2.0
    assert flat[layout.segment("fc.bias").start + 3] == -2.0


def test_population_round_trip_views_and_rowwise_agreement():
    named = _named()
    layout = ParamLayout.from_named(named)
    pop = torch.randn(5, layout.numel)
    views = layout.unflatten_population(pop)
    for name, tensor in views.items():
        assert tensor.shape == (5, *named[name].shape)
        assert tensor.data_ptr() == pop[:, layout.segment(name).start:].data_ptr()  # a view
    for p in range(5):
        single = layout.unflatten(pop[p])
        for name in named:
            assert torch.equal(views[name][p], single[name])
    assert torch.equal(layout.flatten_population(views), pop)


def test_population_of_non_contiguous_rows_still_unflattens():
    layout = ParamLayout.from_named(_named())
    pop = torch.randn(layout.numel, 4).t()  # rows not contiguous
    views = layout.unflatten_population(pop)
    assert torch.equal(layout.flatten_population(views), pop)


def test_mismatches_raise_typed_errors():
    named = _named()
    layout = ParamLayout.from_named(named)
    with pytest.raises(ShapeMismatchError):
        layout.flatten({**named, "fc.bias": torch.zeros(11)})
    with pytest.raises(ConfigError, match="missing"):
        layout.flatten({k: v for k, v in named.items() if k != "fc.bias"})
    with pytest.raises(ShapeMismatchError):
        layout.unflatten(torch.zeros(layout.numel + 1))
    with pytest.raises(ShapeMismatchError):
        layout.unflatten_population(torch.zeros(2, layout.numel - 1))
    with pytest.raises(ConfigError):
        layout.segment("nope")
    with pytest.raises(ConfigError):
        ParamLayout.from_shapes({})


def test_dict_round_trip_and_segment_helpers():
    layout = ParamLayout.from_named(_named())
    assert ParamLayout.from_dict(layout.to_dict()) == layout
    ids = layout.segment_ids()
    assert ids.shape == (layout.numel,)
    for index, seg in enumerate(layout.segments):
        assert bool(torch.all(ids[seg.start:seg.stop] == index))
    expanded = layout.expand_per_segment([1.0, 2.0, 3.0, 4.0])
    assert torch.equal(expanded, torch.tensor([1.0, 2.0, 3.0, 4.0])[ids])
    with pytest.raises(ShapeMismatchError):
        layout.expand_per_segment([1.0, 2.0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=5),
       st.integers(1, 3))
def test_round_trips_for_random_shapes(shapes, pop):
    named = {f"t{i}": torch.randn(tuple(shape)) for i, shape in enumerate(shapes)}
    layout = ParamLayout.from_named(named)
    flat = layout.flatten(named)
    assert all(torch.equal(layout.unflatten(flat)[k], v) for k, v in named.items())
    population = torch.randn(pop, layout.numel)
    assert torch.equal(layout.flatten_population(layout.unflatten_population(population)), population)


def test_relative_sigma_scales_with_each_layer_std():
    named = _named()
    layout = ParamLayout.from_named(named)
    theta = layout.flatten(named)
    sigma = relative_sigma(layout, theta, scale=0.05)
    for seg in layout.segments:
        expected = 0.05 * max(float(theta[seg.start:seg.stop].std(correction=0)), 1e-3)
        assert torch.allclose(sigma[seg.start:seg.stop], torch.full((seg.numel,), expected))
    # Scaling one layer's weights scales only that layer's sigma.
    scaled = dict(named, **{"fc.weight": named["fc.weight"] * 3})
    sigma3 = relative_sigma(layout, layout.flatten(scaled), scale=0.05)
    fc = layout.segment("fc.weight")
    assert torch.allclose(sigma3[fc.start:fc.stop], 3 * sigma[fc.start:fc.stop])
    other = layout.segment("conv1.weight")
    assert torch.equal(sigma3[other.start:other.stop], sigma[other.start:other.stop])
    # A zero bias keeps a positive sigma through the floor.
    bias = layout.segment("fc.bias")
    assert torch.allclose(sigma[bias.start:bias.stop], torch.full((10,), 0.05 * 1e-3))
    with pytest.raises(ConfigError):
        relative_sigma(layout, theta, scale=0.0)
