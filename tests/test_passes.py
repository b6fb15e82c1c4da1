"""Every pass keeps the meaning (interpret before and after), leaves valid IR, and does what it
says; fusion makes one kernel of a one-scan layer and several, correctly, of a chained one."""

import numpy as np
import pytest
from mamba1 import mamba1
from mingru import mingru
from s4d import s4d_bilinear, s4d_zoh

import ssmc
from ssmc import In, Param
from ssmc.ir.printer import format_graph, graph_hash
from ssmc.ops.interpret import run
from ssmc.ops.verify import verify
from ssmc.passes import DEFAULT_PIPELINE, run_passes

LAYERS = [mamba1, mingru, s4d_zoh, s4d_bilinear]


def sizes_for(layer):
    return {d: {"B": 2, "L": 9}.get(d, 5) for d in layer.dim_order}


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_each_pass_preserves_meaning(layer):
    sizes = sizes_for(layer)
    args = layer.random_inputs(sizes, seed=1, optional=True)
    want = run(layer.graph, args, sizes)
    g = layer.graph
    for p in DEFAULT_PIPELINE:
        g = p.apply(g)
        verify(g)
        got = run(g, args, sizes)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-13, err_msg=f"after {p.name}")


def test_trace_shows_every_pass():
    trace = []
    run_passes(mamba1.graph, verify_each=True, trace=trace)
    assert [t.name for t in trace] == [p.name for p in DEFAULT_PIPELINE]
    assert "discretize" in trace[2].before and "discretize" not in trace[2].after
    assert "gate[act=silu]" in trace[1].before and "silu" in trace[1].after


def test_dce_drops_dead_values():
    @ssmc.layer
    def f(x: In["B L D"]):
        _unused = ssmc.exp(x) * 3.0  # noqa: F841
        return x + 1.0

    assert "# dead" in format_graph(f.graph)
    g = run_passes(f.graph)
    assert "exp" not in format_graph(g)


def test_cse_merges_equal_subexpressions():
    @ssmc.layer
    def f(x: In["B L D"]):
        return ssmc.exp(x * 2.0) + ssmc.exp(x * 2.0)

    g = run_passes(f.graph)
    assert sum(n.op in ("exp", "exp2") for n in g.nodes) == 1


def test_canonicalize_folds_constants_and_identities():
    @ssmc.layer
    def f(x: In["B L D"]):
        return ssmc.neg(-(x * 1.0)) + (2.0 * 3.0 - 6.0)

    g = run_passes(f.graph)
    ops = [n.op for n in g.nodes]
    assert ops == [], ops  # the output is the argument itself
    assert g.outputs[0][1].op == "arg"


def test_mamba1_is_one_kernel():
    g = run_passes(mamba1.graph)
    assert len(g.groups) == 1
    assert {n.op for n in g.groups[0].nodes} >= {"scan", "scan_final", "sum", "softplus"}
    assert g.groups[0].loads == ()


@ssmc.layer
def chained(x: In["B L D"], w: Param["D", "normal"]):
    """Two scans, the second over the first's output: two kernels."""
    h1 = ssmc.scan(ssmc.sigmoid(x), x, axis="L")
    y1 = ssmc.tanh(h1) * w
    h2 = ssmc.scan(0.5, y1, axis="L", reverse=True)
    return {"y": h2 + x, "h1_final": h1.final}


def test_chained_scans_become_two_kernels_with_a_note():
    g = run_passes(chained.graph, verify_each=True)
    assert len(g.groups) == 2
    k0, k1 = g.groups
    assert k1.loads and set(k1.loads) <= set(k0.stores)
    assert any("reads values stored by k0" in n for n in k1.notes)


def test_ir_text_and_hash_are_stable():
    from ssmc.dsl.layer import Layer

    again = Layer(mamba1.fn, "mamba1", None)
    assert format_graph(again.graph) == format_graph(mamba1.graph)
    assert graph_hash(again.graph) == graph_hash(mamba1.graph)
