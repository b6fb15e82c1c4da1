"""Metamorphic checks: properties that relate different calls of the same kernels."""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from hypothesis import given
from hypothesis import strategies as st
from mamba1 import mamba1

import ssmc
from ssmc import In
from ssmc.testing.check import make_inputs

SIZES = dict(B=2, D=5, N=3)


def tensors(values):
    return {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in values.items()}


@given(L=st.integers(2, 30), cut=st.integers(1, 29), strategy=st.sampled_from(["sequential", "tiled", "chunked"]))
def test_two_calls_with_the_carried_state_equal_one_call(L, cut, strategy):
    cut = min(cut, L - 1)
    c = ssmc.compile(mamba1, strategy=strategy, chunks=2, unroll=2, block_t=4)
    a = make_inputs(mamba1, dict(SIZES, L=L), "f32", L * 31 + cut)
    full = c(**tensors(a))
    seq = {k for k in ("x", "dt", "B", "C", "z")}
    first = {k: (v[:, :cut] if k in seq else v) for k, v in a.items()}
    second = {k: (v[:, cut:] if k in seq else v) for k, v in a.items()}
    o1 = c(**tensors(first))
    second_t = tensors(second)
    second_t["h0"] = o1["h_final"]
    o2 = c(**second_t)
    torch.testing.assert_close(torch.cat([o1["y"], o2["y"]], 1), full["y"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o2["h_final"], full["h_final"], rtol=1e-5, atol=1e-5)


@ssmc.layer
def fwd(a: In["B L D"], b: In["B L D"]):
    return ssmc.scan(ssmc.sigmoid(a), b, axis="L")


@ssmc.layer
def rev(a: In["B L D"], b: In["B L D"]):
    return ssmc.scan(ssmc.sigmoid(a), b, axis="L", reverse=True)


@pytest.mark.parametrize("strategy", ["sequential", "tiled", "chunked"])
@pytest.mark.parametrize("L", [1, 7, 33])
def test_reverse_of_flipped_equals_flipped_forward(strategy, L):
    rng = np.random.default_rng(L)
    a, b = (torch.tensor(rng.standard_normal((2, L, 3)), dtype=torch.float32, device=DEVICE) for _ in range(2))
    opts = dict(strategy=strategy, chunks=3, unroll=2, block_t=4)
    y_rev = ssmc.compile(rev, **opts)(a=a.flip(1), b=b.flip(1))["y"]
    y_fwd = ssmc.compile(fwd, **opts)(a=a, b=b)["y"]
    torch.testing.assert_close(y_rev.flip(1), y_fwd, rtol=1e-6, atol=1e-6)


def test_results_do_not_depend_on_block_sizes():
    a = tensors(make_inputs(mamba1, dict(SIZES, L=23), "f32", 5))
    outs = []
    for strategy, block, unroll, block_t, chunks in [
        ("sequential", 1, 1, None, None), ("sequential", 4, 8, None, None), ("sequential", 8, 3, None, None),
        ("tiled", 2, 4, 2, None), ("tiled", 8, 4, 16, None), ("chunked", 4, 2, None, 5), ("chunked", 2, 4, None, 2),
    ]:
        c = ssmc.compile(mamba1, strategy=strategy, block=block, unroll=unroll, block_t=block_t, chunks=chunks)
        outs.append(c(**a))
    for o in outs[1:]:
        for k in o:
            torch.testing.assert_close(o[k], outs[0][k], rtol=2e-6, atol=2e-6)
