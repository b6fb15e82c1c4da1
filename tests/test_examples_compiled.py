"""Every example layer in examples/ (the ones checked in as goldens), compiled forward and
backward, against the interpreter at fixed small sizes: each example is checked here whatever
the hypothesis draws of the broader tests pick."""

import pytest
from conftest import DEVICE

import ssmc
from ssmc.backends.triton.backward import backward_for
from ssmc.testing.check import check_compiled
from ssmc.testing.golden import example_layers

EXAMPLES = {layer.name: layer for layer in example_layers()}
SIZES = {"B": 2, "L": 11, "D": 5, "H": 3, "N": 4, "G": 2, "R": 2, "P": 3, "K": 3, "V": 4}


def _sizes(layer):
    return {d: layer.fixed_sizes.get(d, SIZES.get(d)) for d in layer.dim_order}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_example_forward(name, dtype):
    layer = EXAMPLES[name]
    strategies = ["sequential", "chunked"] + (["matrix"] if ssmc.compile(layer).has_matrix_form else [])
    for strategy in strategies:
        c = ssmc.compile(layer, strategy=strategy, chunks=3, block_t=4)
        bad = [str(r) for r in check_compiled(layer, c, _sizes(layer), dtype, 7, DEVICE, True) if not r.ok]
        assert not bad, (strategy, bad)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_backward(name):
    layer = EXAMPLES[name]
    try:
        c = backward_for(layer, sub=2)
    except ssmc.LoweringError as e:  # a layer with chained recurrences: refused by name, not wrong
        assert "recurrences" in str(e)
        pytest.skip(str(e))
    bad = [str(r) for r in check_compiled(c.layer, c, _sizes(layer), "f32", 8, DEVICE, True) if not r.ok]
    assert not bad, bad


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_first_output_asked_for_alone(name):
    """``outputs=[the first]`` (a training step's: y without the final state): it alone comes
    back, within the tolerance table (the kernels may take less care of what is not asked: the
    matrix form's states kernel on a GPU). A layer with one output has nothing to leave out."""
    layer = EXAMPLES[name]
    c = ssmc.compile(layer, block_t=4)
    if len(c.output_names()) < 2:
        pytest.skip("one output")
    first = c.output_names()[0]
    bad = [str(r) for r in check_compiled(layer, c, _sizes(layer), "bf16", 9, DEVICE, True, outputs=[first]) if not r.ok]
    assert not bad, bad
