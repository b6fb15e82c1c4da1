"""Random programs: every pass keeps the meaning, and the kernels match the interpreter."""

import numpy as np
from conftest import DEVICE
from hypothesis import given, note
from hypothesis import strategies as st

import ssmc
from ssmc.ops.interpret import run
from ssmc.ops.verify import verify
from ssmc.passes import DEFAULT_PIPELINE
from ssmc.testing.check import check_compiled
from ssmc.testing.programs import programs


@given(p=programs(), seed=st.integers(0, 1000))
def test_passes_preserve_meaning(p, seed):
    note(p.source)
    args = p.layer.random_inputs(p.sizes, seed, optional=True)
    want = run(p.layer.graph, args, p.sizes)
    g = p.layer.graph
    for ps in DEFAULT_PIPELINE:
        g = ps.apply(g)
        verify(g)
        got = run(g, args, p.sizes)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=f"{ps.name}: {k}")


@given(
    p=programs(),
    strategy=st.sampled_from(["sequential", "tiled", "chunked"]),
    chunks=st.integers(2, 3),
    dtype=st.sampled_from(["f32", "f32", "bf16"]),
    seed=st.integers(0, 1000),
)
def test_kernels_match_interpreter(p, strategy, chunks, dtype, seed):
    note(p.source)
    c = ssmc.compile(p.layer, strategy=strategy, chunks=chunks, unroll=2, block_t=4, verify=True)
    results = check_compiled(p.layer, c, p.sizes, dtype, seed, DEVICE)
    bad = [str(r) for r in results if not r.ok]
    assert not bad, "\n".join(bad) + "\n" + p.source


def _backward_or_skip(layer):
    from hypothesis import assume

    from ssmc.autodiff import backward_layer
    from ssmc.errors import LoweringError

    try:
        return backward_layer(layer)
    except LoweringError as e:  # refused by name: several recurrences, `mean`
        refused = ("recurrences", "no derivative rule", "nothing to differentiate")
        assume(not any(r in str(e) for r in refused))  # a refusal by name: skip the case
        raise


@given(p=programs(), seed=st.integers(0, 1000))
def test_autodiff_of_random_programs_matches_finite_differences(p, seed):
    note(p.source)
    from hypothesis import assume

    from ssmc.ops.interpret import align, to_canonical

    # cast's rule is straight-through (rounding's derivative is 0 almost everywhere): not FD's
    assume(all(n.op != "cast" for n in p.layer.graph.nodes))
    bl = _backward_or_skip(p.layer)
    layer, rng = p.layer, np.random.default_rng(seed)
    inp = layer.random_inputs(p.sizes, seed, optional=True)
    cots = {k: rng.standard_normal(v.shape) for k, v in layer(**inp).items()}
    grads = bl(**inp, **{"grad_" + k: v for k, v in cots.items()})

    def f(values):
        out = layer(**values)
        return sum(float((out[k] * cots[k]).sum()) for k in cots)

    eps = 1e-6
    for arg, value in inp.items():
        if "grad_" + arg not in grads:
            continue
        v = rng.standard_normal(value.shape)
        numeric = (f({**inp, arg: value + eps * v}) - f({**inp, arg: value - eps * v})) / (2 * eps)
        spec = layer.specs[arg]
        canon = to_canonical(v, spec.layout, tuple(d for d in layer.dim_order if d in spec.layout))
        gdims = bl.graph.output("grad_" + arg).dims
        cdims = tuple(d for d in layer.dim_order if d in spec.layout)
        analytic = float((align(grads["grad_" + arg], gdims, cdims) * canon).sum())
        assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric)), (arg, numeric, analytic)


@given(p=programs(), dtype=st.sampled_from(["f32", "bf16"]), seed=st.integers(0, 1000),
       chunks=st.sampled_from([None, 2, 3]))
def test_backward_kernels_of_random_programs_match_interpreter(p, dtype, seed, chunks):
    note(p.source)
    from ssmc.backends.triton.backward import backward_for

    _backward_or_skip(p.layer)
    # chunks: the main kernel's sequence split among programs, where the program allows it
    c = backward_for(p.layer, unroll=2, block=4, sub=2, verify=True, chunks=chunks)
    results = check_compiled(c.layer, c, p.sizes, dtype, seed, DEVICE)
    bad = [str(r) for r in results if not r.ok]
    assert not bad, "\n".join(bad)
