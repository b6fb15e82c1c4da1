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
