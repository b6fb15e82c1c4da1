"""The matrix (tensor-core) form of scans with a scalar decay per head (lower_matrix): which
layers have it and why others do not, and its kernels against the interpreter: sizes, tiles,
chunks of several tiles, dtypes, initial states, packed batches, strides."""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from gla import gla, simple_gla
from hypothesis import given
from hypothesis import strategies as st
from mamba1 import mamba1
from mamba2 import mamba2

import ssmc
from ssmc import In, Param, exp, exp2, layer, scan, softplus
from ssmc.backends.triton.lower_matrix import matrix_form
from ssmc.testing.check import check_compiled, make_inputs


@layer
def retention(
    q: In["B L H K"],
    k: In["B L H K"],
    v: In["B L H V"],
    gamma: Param["H", "log_sigmoid"],   # a decay per head, the same every step (RetNet)
    w: Param["H K"],
    s: In["B L H"],
):
    # k enters scaled (a computed factor, not a plain load); the output is gated by a value
    # along time only (no V): the epilogue mixes both kinds of tiles
    S = scan(exp(gamma), (k * w) * v, axis="L")
    o = (S * q).sum("K")
    return {"o": o * softplus(s), "o2": o * 2.0}


@layer
def readout_scaled(
    x: In["B L H P"],
    a: In["B L H"],
    b: In["B L H N"],
    c: In["B L H N"],
    s: In["B L H"],
):
    # the readout's factor is a product (c * s), the decay exp2 of a value per step
    h = scan(exp2(-softplus(a)), x * b, axis="L")
    return {"y": (h * (c * s)).sum("N") + x}


LAYERS = {"mamba2": mamba2, "simple_gla": simple_gla, "readout_scaled": readout_scaled}
SIZES = {"B": 2, "G": 2, "R": 2, "P": 3, "N": 4, "H": 3, "K": 5, "V": 3}


def _form(layer):
    c = ssmc.compile(layer)
    return [matrix_form(c.graph, g) for g in c.graph.groups]


def test_which_layers_have_the_form():
    for lay in (mamba2, simple_gla, readout_scaled):
        assert not isinstance(_form(lay)[0], str), lay.name
    # Mamba-1: the decay varies along N; GLA: along the key dim
    assert "decay varies along" in _form(mamba1)[0]
    assert "decay varies along" in _form(gla)[0]
    assert ssmc.compile(mamba2).has_matrix_form and not ssmc.compile(mamba1).has_matrix_form


def test_matrix_strategy_refused_with_the_reason():
    with pytest.raises(ssmc.LoweringError, match="no kernel has the matrix form.*decay varies along"):
        ssmc.compile(mamba1, strategy="matrix").plans("matrix")


def test_sum_is_not_a_readout_of_a_second_state():
    @layer
    def twice(x: In["B L H P"], a: In["B L H"], b: In["B L H N"], c: In["B L H N"]):
        h = scan(exp(a), x * b, axis="L")
        return {"y": (h * c).sum("N"), "z": (h * b).sum("N")}

    assert "exactly one" in _form(twice)[0]


@given(
    name=st.sampled_from(sorted(LAYERS) + ["retention"]),
    L=st.integers(1, 40),
    dtype=st.sampled_from(["f32", "bf16", "f16"]),
    block_t=st.sampled_from([1, 2, 4, 8]),
    sub=st.integers(1, 3),
    seed=st.integers(0, 1000),
    h0=st.booleans(),
)
def test_matrix_kernels_match_interpreter(name, L, dtype, block_t, sub, seed, h0):
    lay = retention if name == "retention" else LAYERS[name]
    c = ssmc.compile(lay, strategy="matrix", block_t=block_t)
    c.options["sub"] = sub  # chunks of several tiles: the outputs kernel walks the earlier ones
    sizes = {d: L if d == "L" else SIZES[d] for d in lay.dim_order}
    bad = [str(r) for r in check_compiled(lay, c, sizes, dtype, seed, DEVICE, h0) if not r.ok]
    assert not bad, bad
    assert all(k.strategy == "matrix" for k in c.kernels("matrix"))


def test_default_picks_the_form_for_long_calls_only():
    c = ssmc.compile(simple_gla)
    assert c.default_strategy(False, 64) == "matrix"
    assert c.default_strategy(False, 8) == "chunked"
    assert ssmc.compile(mamba1).default_strategy(False, 4096) == "chunked"
    sizes = {"B": 1, "L": 70, "H": 2, "K": 3, "V": 2}
    x = make_inputs(simple_gla, sizes, "f32", 0, False)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in x.items()}
    out = c(**t)
    assert any(key[1] == "matrix" for key in c._fns)  # the kernels that ran
    ref = simple_gla(**x)
    np.testing.assert_allclose(out["o"].cpu().double().numpy(), ref["o"], rtol=2e-5, atol=2e-5 * np.abs(ref["o"]).max())


@given(lens=st.lists(st.integers(1, 19), min_size=1, max_size=4), seed=st.integers(0, 1000), with_h0=st.booleans())
def test_packed_batch_equals_each_sequence_alone(lens, seed, with_h0):
    S, T = len(lens), sum(lens)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    sizes = {"B": 1, "L": T, "H": 2, "K": 3, "V": 2}
    a = make_inputs(simple_gla, sizes, "f32", seed, with_optional=False)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in a.items()}
    h0 = np.random.default_rng(seed).standard_normal((S, 2, 3, 2)) if with_h0 else None
    if with_h0:
        t["h0"] = torch.tensor(h0, dtype=torch.float32, device=DEVICE)
    c = ssmc.compile(simple_gla, strategy="matrix", block_t=4)
    out = c(**t, cu_seqlens=torch.tensor(offsets, dtype=torch.int32, device=DEVICE))
    for i in range(S):
        s0, s1 = offsets[i], offsets[i + 1]
        one = {k: (v[:, s0:s1] if k != "h0" else v) for k, v in a.items()}
        if with_h0:
            one["h0"] = h0[i : i + 1]
        ref = simple_gla(**one)
        np.testing.assert_allclose(out["o"][:, s0:s1].cpu().double().numpy(), ref["o"], rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(out["h_final"][i].cpu().double().numpy(), ref["h_final"][0], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_strided_inputs(dtype):
    c = ssmc.compile(mamba2, strategy="matrix", block_t=4)
    sizes = {"B": 2, "L": 13, "G": 1, "R": 3, "P": 5, "N": 3}
    bad = [str(r) for r in check_compiled(mamba2, c, sizes, dtype, 3, DEVICE, True, noncontiguous=True) if not r.ok]
    assert not bad, bad


def test_tile_offsets_past_32_bits_are_refused():
    from ssmc.backends.triton.lower_matrix import check_tile_offsets
    from ssmc.backends.triton.schedule import Schedule

    c = ssmc.compile(simple_gla, strategy="matrix")
    k = c.kernels("matrix")[1]
    sched = Schedule("matrix", 64, (("K", 64), ("V", 64)), 4, 1, (), 1)
    call = []
    for t in k.tensors:
        call.append(None)
        call.extend(2**26 if (d == "L" and t.source == "q") else 1 for d in t.dims)
    with pytest.raises(ssmc.ArgumentError, match="`q` has stride 67108864 along L.*2\\^31"):
        check_tile_offsets("simple_gla", k, call, sched)


@pytest.mark.gpu  # skipped where there is no GPU (conftest)
@pytest.mark.parametrize("name", ["mamba2", "simple_gla"])
@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_gpu_sizes_of_the_benchmark_kind(name, dtype):
    """Tensor-core tiles (16-bit operands, the bf16 split of the states kernel) at sizes with
    whole and partial blocks."""
    lay = LAYERS[name]
    for L, n in ((300, 128), (257, 48)):
        sizes = {"B": 2, "L": L, "G": 1, "R": 3, "P": 64, "N": n, "H": 3, "K": n, "V": 64}
        c = ssmc.compile(lay, strategy="matrix")
        bad = [str(r) for r in check_compiled(lay, c, {d: sizes[d] for d in lay.dim_order}, dtype, 1, DEVICE, True) if not r.ok]
        assert not bad, (L, n, bad)


def _states_precision(c) -> str:
    """The products' precision the last call's states kernel took."""
    scheds = [s for (name, *_), s in c.fitted.items() if name.endswith("_matrix_states")]
    return dict(scheds[-1].flags)["PREC"]


def test_outputs_asked_for_alone():
    """``outputs=``: only those come back, the same values as a call returning all; a name that
    is not an output, none, or one twice is refused with the layer's outputs named."""
    sizes = {"B": 2, "L": 21, "G": 1, "R": 2, "P": 3, "N": 5}
    values = make_inputs(mamba2, sizes, "bf16", seed=4)
    tensors = {k: torch.tensor(v, dtype=torch.bfloat16 if np.ndim(v) > 2 else torch.float32, device=DEVICE)
               for k, v in values.items()}
    c = ssmc.compile(mamba2, strategy="matrix", block_t=4)
    # the interpreter multiplies in float32 either way: the same bits; a GPU's states kernel
    # takes bf16 products without the final state (its accuracy: the GPU test below)
    same = {"rtol": 0, "atol": 0} if not str(DEVICE).startswith("cuda") else None
    full = c(**tensors)
    only = c(**tensors, outputs=["y"])
    assert list(only) == ["y"] and only["y"].shape == full["y"].shape and only["y"].dtype == full["y"].dtype
    if same:
        torch.testing.assert_close(only["y"], full["y"], **same)
    assert list(c(**tensors, outputs="h_final")) == ["h_final"]
    for bad in (["y", "h"], [], ["y", "y"]):
        with pytest.raises(ssmc.ArgumentError, match=r"outputs=.*\['y', 'h_final'\]"):
            c(**tensors, outputs=bad)
    leaves = {k: v.clone().requires_grad_() for k, v in tensors.items()}
    out = c(**leaves, outputs=("y",))  # through autograd: the op returns y alone
    assert list(out) == ["y"]
    out["y"].float().square().sum().backward()
    again = {k: v.clone().requires_grad_() for k, v in tensors.items()}
    c(**again)["y"].float().square().sum().backward()
    for k in tensors:
        assert leaves[k].grad is not None, k
        if same:
            torch.testing.assert_close(leaves[k].grad, again[k].grad, **same, msg=k)


@pytest.mark.gpu  # skipped where there is no GPU (conftest)
@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_gpu_states_in_two_bf16_products_where_no_final_state_is_asked(dtype):
    """Without the final state the states kernel multiplies in two bf16 products a tile (bf16
    inputs; f16's stay float32-accurate: the decayed inputs could overflow f16); y within the
    tolerance table either way, and asking for the final state gives it float32-accurate."""
    sizes = {"B": 2, "L": 300, "G": 1, "R": 3, "P": 64, "N": 128}
    c = ssmc.compile(mamba2, strategy="matrix")
    bad = [str(r) for r in check_compiled(mamba2, c, sizes, dtype, 1, DEVICE, True, outputs=["y"]) if not r.ok]
    assert not bad, bad
    assert _states_precision(c) == ("bf16x2" if dtype == "bf16" else "tf32x3")
    bad = [str(r) for r in check_compiled(mamba2, c, sizes, dtype, 1, DEVICE, True, outputs=["y", "h_final"]) if not r.ok]
    assert not bad, bad
    assert _states_precision(c) == ("bf16split" if dtype == "bf16" else "tf32x3")
