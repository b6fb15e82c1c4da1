"""The inference cache: a module's recurrent state between calls (issue 9's state contract).
k-token and single-token decode continue the full forward; a bfloat16 cache rounds the state
once per call; rows are reset, reordered and selected; bad uses are refused clearly."""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from mamba1 import mamba1

import ssmc
from ssmc.errors import ArgumentError

SEQ = ("x", "dt", "B", "C", "z")


def _setup(B=2, L=13, D=5, N=3, seed=0):
    m = ssmc.to_module(mamba1, {"D": D, "N": N}, seed=seed).to(DEVICE)
    g = torch.Generator().manual_seed(seed)
    shapes = {"x": (B, L, D), "dt": (B, L, D), "z": (B, L, D), "B": (B, L, N), "C": (B, L, N)}
    x = {k: torch.randn(*s, generator=g).to(DEVICE) for k, s in shapes.items()}
    return m, x


def test_decoding_in_pieces_equals_the_full_forward():
    m, x = _setup()
    with torch.no_grad():
        full = m(**x)
    cache = m.new_cache(2)
    assert cache.states["h_final"].shape == (2, 5, 3) and cache.dtype == torch.float32
    ys = []
    for a, b in [(0, 1), (1, 5), (5, 6), (6, 11), (11, 13)]:  # k-token calls, k = 1 included
        out = m.decode(cache, **{k: v[:, a:b] for k, v in x.items()})
        assert out["y"].shape == (2, b - a, 5)
        ys.append(out["y"])
    torch.testing.assert_close(torch.cat(ys, 1), full["y"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cache.states["h_final"], full["h_final"], rtol=1e-5, atol=1e-6)
    single = m.new_cache(2)
    for t in range(13):  # one token, no sequence axis
        y = m.decode(single, **{k: v[:, t] for k, v in x.items()})["y"]
        assert y.shape == (2, 5)
        torch.testing.assert_close(y, full["y"][:, t], rtol=1e-5, atol=1e-6)


def _bf16_ulp(v: torch.Tensor) -> torch.Tensor:
    """The spacing of bfloat16 numbers at each value (8 significant bits)."""
    e = torch.floor(torch.log2(v.abs().clamp_min(2.0**-126)))
    return torch.pow(2.0, e - 7)


def test_a_bfloat16_cache_rounds_the_state_once_per_call():
    """Each call starts from the stored bfloat16 state, computes in float32 and stores the new
    state rounded to bfloat16: against the float64 interpreter from the same stored state, the
    state is the rounded truth (or its neighbour, where float32 landed across a rounding
    boundary) and the output is float32-accurate."""
    m, x = _setup()
    cache = m.new_cache(2, dtype=torch.bfloat16)
    cache.states["h_final"].copy_(torch.randn(2, 5, 3))
    params = {k: v.detach().cpu() for k, v in m.named_parameters()}
    for t in range(4):
        before = cache.states["h_final"].detach().cpu().double()
        y = m.decode(cache, **{k: v[:, t] for k, v in x.items()})["y"]
        ref = mamba1(**{k: v[:, t:t + 1].cpu() for k, v in x.items()}, **params, h0=before)
        want = torch.tensor(ref["h_final"])
        got = cache.states["h_final"].cpu().double()
        assert cache.states["h_final"].dtype == torch.bfloat16
        assert ((got - want).abs() <= _bf16_ulp(want)).all()
        np.testing.assert_allclose(y.cpu().double().numpy(), ref["y"][:, 0], rtol=1e-5, atol=1e-6)


def test_rows_reset_reorder_and_select():
    m, x = _setup(B=3)
    cache = m.new_cache(3)
    m.decode(cache, **{k: v[:, :4] for k, v in x.items()})
    s = cache.states["h_final"].clone()
    cache.reorder([2, 0, 0])  # beam search: row 0 <- old 2, rows 1, 2 <- old 0
    torch.testing.assert_close(cache.states["h_final"], s[[2, 0, 0]], rtol=0, atol=0)
    ptr = cache.states["h_final"].data_ptr()
    cache.reset([1])
    assert cache.states["h_final"].data_ptr() == ptr  # in place: a captured graph stays valid
    assert not cache.states["h_final"][1].any() and torch.equal(cache.states["h_final"][0], s[2])
    one = cache[[0]]
    assert one.batch_size == 1 and torch.equal(one.states["h_final"][0], s[2])
    # a reset row starts a new sequence: its output equals a fresh cache's
    fresh = m.new_cache(3)
    y_new = m.decode(cache, **{k: v[:, 4] for k, v in x.items()})["y"]
    y_fresh = m.decode(fresh, **{k: v[:, 4] for k, v in x.items()})["y"]
    torch.testing.assert_close(y_new[1], y_fresh[1], rtol=0, atol=0)


def test_bad_uses_are_refused_before_anything_runs():
    m, x = _setup(B=2)
    cache = m.new_cache(2)
    with pytest.raises(ArgumentError, match="out of range"):
        cache.reset([2])
    with pytest.raises(ArgumentError, match="one index per row"):
        cache.reorder([0])
    with pytest.raises(ArgumentError, match="B=2 but the cache holds 3 sequences"):
        m.decode(m.new_cache(3), **{k: v[:, 0] for k, v in x.items()})
    with pytest.raises(ArgumentError, match="storage dtype"):
        m.new_cache(2, dtype=torch.int32)
    with pytest.raises(TypeError, match="comes from the cache"):
        m.decode(cache, **{k: v[:, 0] for k, v in x.items()}, h0=cache.states["h_final"])
    with pytest.raises(ArgumentError, match="sequence axis"):
        m.decode(cache, **{k: (v[:, 0] if k == "x" else v[:, :1]) for k, v in x.items()})
    assert not cache.states["h_final"].any()  # nothing ran
