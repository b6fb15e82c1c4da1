"""Deterministic mode (issue 9): the backward's sums across programs go to a slot per program
and are summed in a fixed order, so forward and backward give the same bits run to run; the
results still match the interpreter (the truth), and the mode is on under
``torch.use_deterministic_algorithms(True)``."""

import pytest
import torch
from conftest import DEVICE
from hypothesis import given
from hypothesis import strategies as st
from mamba1 import mamba1
from test_backward import LAYERS, sizes_for

import ssmc
from ssmc.backends.triton.backward import CompiledBackward
from ssmc.backends.triton.codegen import generate
from ssmc.backends.triton.jit import versions
from ssmc.testing.check import check_compiled

_C: dict = {}


def det_backward(name, unroll, block, chunks=None):
    key = (name, unroll, block, chunks)
    if key not in _C:
        c = CompiledBackward(LAYERS[name], unroll=unroll, block=block, sub=2, verify=True, chunks=chunks)
        c.deterministic = True
        _C[key] = c
    return _C[key]


@given(
    name=st.sampled_from(sorted(LAYERS)),
    dtype=st.sampled_from(["f32", "bf16"]),
    B=st.integers(1, 3),
    L=st.integers(1, 30),
    D=st.integers(1, 9),
    N=st.integers(1, 6),
    # (steps per chunk, channels per program, chunks of the sequence: its sums over time then
    # per-program slots too)
    tiles=st.sampled_from([(2, 2, None), (4, None, 3), (1, 4, 2)]),
    seed=st.integers(0, 2**16),
)
def test_deterministic_backward_matches_interpreter(name, dtype, B, L, D, N, tiles, seed):
    c = det_backward(name, *tiles)
    results = check_compiled(c.layer, c, sizes_for(LAYERS[name], B, L, D, N), dtype, seed, DEVICE, True)
    bad = [str(r) for r in results if not r.ok]
    assert not bad, "\n".join(bad)


def test_deterministic_kernels_add_nothing_atomically():
    c = det_backward("mamba1", 2, 2)
    for k in c.kernels("bidir"):
        if any(t.accumulate for t in k.tensors):
            det = c.deterministic_kernel(k)
            src = generate(det, "hash", "pipeline", versions())
            assert "tl.atomic_add" not in src and "_det" in det.name
            assert all(t.partial for t in det.tensors if t.accumulate)


def _grads(c, t):
    t = {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in t.items()}
    out = c(**t)
    (out["y"].float().pow(2).sum() + out["h_final"].sum()).backward()
    return [out["y"].detach()] + [t[k].grad for k in sorted(t)]


def _mamba_inputs(B, L, D, N, dtype, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    t = {k: torch.randn(B, L, D, device=DEVICE, generator=g).to(dtype) for k in ("x", "dt", "z")}
    t.update({k: torch.randn(B, L, N, device=DEVICE, generator=g).to(dtype) for k in ("B", "C")})
    t["A_log"] = torch.rand(D, N, device=DEVICE, generator=g)
    t["D"] = torch.randn(D, device=DEVICE, generator=g)
    t["dt_bias"] = torch.randn(D, device=DEVICE, generator=g) - 2
    t["h0"] = torch.randn(B, D, N, device=DEVICE, generator=g)
    return t


def _bitwise_twice(c, t):
    first, second = _grads(c, t), _grads(c, t)  # the second call is replayed (replay.py)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    return first


def test_deterministic_mode_twice_the_same_bits_and_close_to_default():
    t = _mamba_inputs(3, 11, 6, 4, torch.float32)
    det = _bitwise_twice(ssmc.compile(mamba1, deterministic=True), t)
    default = _grads(ssmc.compile(mamba1), t)
    for a, b in zip(det, default):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_use_deterministic_algorithms_turns_it_on():
    c = ssmc.compile(mamba1)
    t = _mamba_inputs(2, 6, 3, 2, torch.float32)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        _grads(c, t)
    finally:
        torch.use_deterministic_algorithms(before)
    assert c.backward_compiled()._det_kernels, "no deterministic kernel was used"


def test_deterministic_packed_batch():
    c = ssmc.compile(mamba1, deterministic=True)
    ref = ssmc.compile(mamba1)
    t = _mamba_inputs(1, 12, 4, 3, torch.float32)
    t["h0"] = torch.randn(3, 4, 3, device=DEVICE)
    cu = torch.tensor([0, 5, 6, 12], dtype=torch.int32, device=DEVICE)

    def grads(comp):
        u = {k: v.detach().clone().requires_grad_(True) for k, v in t.items()}
        out = comp(**u, cu_seqlens=cu)
        (out["y"].pow(2).sum() + out["h_final"].sum()).backward()
        return [u[k].grad for k in sorted(u)]

    a, b, r = grads(c), grads(c), grads(ref)
    for x, y, z in zip(a, b, r):
        assert torch.equal(x, y)
        torch.testing.assert_close(x, z, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_deterministic_on_gpu_bitwise_at_a_real_size():
    """Two runs of forward and backward at B4 L1024 D1024 N16 (bf16 inputs): the same bits."""
    t = _mamba_inputs(4, 1024, 1024, 16, torch.bfloat16)
    _bitwise_twice(ssmc.compile(mamba1, deterministic=True), t)
