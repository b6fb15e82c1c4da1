"""Packed variable-length batches (cu_seqlens): a packed batch equals each sequence run alone."""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from hypothesis import given
from hypothesis import strategies as st
from mamba1 import mamba1
from test_kernels import reverse_gated

import ssmc
from ssmc import ArgumentError
from ssmc.testing.check import make_inputs

SEQ = {"mamba1": ("x", "dt", "B", "C", "z"), "reverse_gated": ("x", "k")}
LAYERS = {"mamba1": mamba1, "reverse_gated": reverse_gated}
_C: dict = {}


def compiled(name, strategy):
    if (name, strategy) not in _C:
        _C[name, strategy] = ssmc.compile(LAYERS[name], strategy=strategy, chunks=3, unroll=2, block_t=4)
    return _C[name, strategy]


@given(
    name=st.sampled_from(sorted(LAYERS)),
    lens=st.lists(st.integers(1, 20), min_size=1, max_size=4),
    strategy=st.sampled_from(["sequential", "tiled", "chunked"]),
    with_h0=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_packed_batch_equals_each_sequence_alone(name, lens, strategy, with_h0, seed):
    layer = LAYERS[name]
    S, T = len(lens), sum(lens)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    sizes = {d: {"B": 1, "L": T, "D": 3, "N": 2}[d] for d in layer.dim_order}
    a = make_inputs(layer, sizes, "f32", seed, with_optional=False)
    state_shape = (S, 3, 2) if name == "mamba1" else (S, 3)
    h0 = np.random.default_rng(seed).standard_normal(state_shape) if with_h0 else None
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in a.items()}
    if with_h0:
        t["h0"] = torch.tensor(h0, dtype=torch.float32, device=DEVICE)
    cu = torch.tensor(offsets, dtype=torch.int32, device=DEVICE)
    before = {k: v.clone() for k, v in t.items()}
    out = compiled(name, strategy)(**t, cu_seqlens=cu)
    for k in t:
        assert torch.equal(t[k], before[k]), f"input {k} was modified"
    final = "h_final" if name == "mamba1" else "h_first"
    assert out[final].shape[0] == S and out["y"].shape[:2] == (1, T)
    for i in range(S):
        s0, s1 = offsets[i], offsets[i + 1]
        one = {k: (v[:, s0:s1] if k in SEQ[name] else v) for k, v in a.items()}
        if with_h0:
            one["h0"] = h0[i : i + 1]
        ref = layer(**one)
        np.testing.assert_allclose(out["y"][:, s0:s1].cpu().double().numpy(), ref["y"], rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(out[final][i].cpu().double().numpy(), ref[final][0], rtol=2e-5, atol=2e-5)


def packed_args():
    a = make_inputs(mamba1, dict(B=1, L=10, D=3, N=2), "f32", 0, with_optional=False)
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in a.items()}


@pytest.mark.parametrize(
    "cu,match",
    [
        ([1, 4, 10], r"must start at 0, never decrease and end at the packed length L=10"),
        ([0, 6, 4, 10], r"never decrease"),
        ([0, 4, 9], r"end at the packed length L=10"),
    ],
)
def test_bad_offsets(cu, match):
    with pytest.raises(ArgumentError, match=match):
        ssmc.compile(mamba1)(**packed_args(), cu_seqlens=torch.tensor(cu, dtype=torch.int32))


def test_bad_offset_tensors():
    c = ssmc.compile(mamba1)
    with pytest.raises(ArgumentError, match=r"cu_seqlens must be a 1-D int32 tensor .* got torch.int64"):
        c(**packed_args(), cu_seqlens=torch.tensor([0, 10]))
    with pytest.raises(ArgumentError, match=r"cu_seqlens is on meta but the inputs are on cpu"):
        c(**packed_args(), cu_seqlens=torch.tensor([0, 10], dtype=torch.int32, device="meta"))


def test_packed_inputs_are_one_row_and_states_one_per_sequence():
    c = ssmc.compile(mamba1)
    a = packed_args()
    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    bad = dict(a, x=torch.cat([a["x"], a["x"]]))
    with pytest.raises(ArgumentError, match=r"argument `x` must be one packed row: B=1, got B=2"):
        c(**bad, cu_seqlens=cu)
    with pytest.raises(ArgumentError, match=r"argument `h0` has B=3 but cu_seqlens holds 2 sequences"):
        c(**a, h0=torch.zeros(3, 3, 2), cu_seqlens=cu)


def test_programs_take_sequences_longest_first():
    """The grid's batch slots take sequences longest first (ties in the caller's order); the
    results stay in the caller's order (the test above, with lengths in any order)."""
    from ssmc.backends.triton.binding import bind_packed

    c = ssmc.compile(mamba1)
    cu = torch.tensor([0, 2, 9, 11, 18, 19], dtype=torch.int32)  # lengths 2, 7, 2, 7, 1
    a = make_inputs(mamba1, dict(B=1, L=19, D=3, N=2), "f32", 0, with_optional=False)
    a = {k: torch.tensor(v, dtype=torch.float32) for k, v in a.items()}
    sizes, packed = bind_packed(c, a, cu, torch.device("cpu"))
    assert sizes["B"] == 5 and packed.longest == 7
    assert packed.order.tolist() == [1, 3, 0, 2, 4] and packed.order.dtype == torch.int32


@pytest.mark.parametrize("name,kw", [("mamba1", dict(strategy="sequential")), ("mamba1", dict(strategy="chunked", chunks=3)),
                                     ("mamba1", dict(strategy="tiled", block_t=4)), ("mamba2", dict(block_t=4))])
def test_empty_sequences_pass_their_state_through(name, kw):
    """Sequences of length 0 in a packed batch (a data loader's empty documents): each one's
    final state is its initial state, its h0's gradient the final state's, and the sequences
    around it are untouched; Mamba-2's matrix backward (forced: float32 calls run the recurrent
    one) gives the recurrent backward's gradients."""
    from mamba2 import mamba2

    layer, dims = {"mamba1": (mamba1, dict(D=3, N=2)), "mamba2": (mamba2, dict(G=1, R=2, P=4, N=4))}[name]
    lens = [5, 0, 7, 0]
    off = np.concatenate([[0], np.cumsum(lens)])
    a = make_inputs(layer, {**dims, "B": 1, "L": sum(lens)}, "f32", 0, with_optional=False)
    seq = [k for k, s in layer.specs.items() if "L" in s.layout]
    state = tuple(dims[d] for d in layer.specs["h0"].layout[1:])
    h0 = np.random.default_rng(1).standard_normal((len(lens),) + state)

    def grads(force):
        c = ssmc.compile(layer, **kw)
        if force:
            c.backward_compiled().force = True  # MatrixBackward's: float32 calls too
        t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True) for k, v in a.items()}
        t["h0"] = torch.tensor(h0, dtype=torch.float32, device=DEVICE, requires_grad=True)
        out = c(**t, cu_seqlens=torch.tensor(off, dtype=torch.int32, device=DEVICE))
        (out["y"].square().sum() + out["h_final"].sum()).backward()
        return out, {k: v.grad for k, v in t.items()}

    out, g = grads(False)
    for i in range(len(lens)):
        s0, s1 = off[i], off[i + 1]
        if s0 == s1:
            np.testing.assert_allclose(out["h_final"][i].detach().cpu().numpy(), h0[i], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(g["h0"][i].cpu().numpy(), np.ones(state), rtol=1e-6)
            continue
        ref = layer(**{k: (v[:, s0:s1] if k in seq else v) for k, v in a.items()}, h0=h0[i : i + 1])
        np.testing.assert_allclose(out["y"][:, s0:s1].detach().cpu().double().numpy(), ref["y"], rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(out["h_final"][i].detach().cpu().double().numpy(), ref["h_final"][0], rtol=2e-5, atol=2e-5)
    if name == "mamba2":
        _, gm = grads(True)
        for k in g:
            torch.testing.assert_close(gm[k], g[k], rtol=1e-4, atol=1e-5, msg=k)
