"""The short causal convolution (`ssmc.conv`, ssmc/ops/conv.py): its meaning against PyTorch's
conv1d, its kernels (alone and fused into a scan's) and their backward against the
interpreter, its window in the state contract (chunked prefill, steps, decoding, packed
batches), and its errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from causal_conv import causal_conv
from conftest import DEVICE
from hypothesis import given, settings
from hypothesis import strategies as st
from mamba2 import mamba2
from mamba2_conv import mamba2_conv
from test_backward import assert_matches_finite_differences

import ssmc
from ssmc import DefinitionError, In, LoweringError, Param
from ssmc.backends.triton.backward import CompiledBackward
from ssmc.testing.check import check_compiled, make_inputs


@ssmc.layer
def conv_reverse(x: In["B L D"], k: In["B L D"], w: Param["D K", "conv"], win: In["B D K"] = None):
    """A conv feeding a reverse scan: the kernel walks time from the end, the conv looks back."""
    c = ssmc.conv(x, w, axis="L", window0=win)
    h = ssmc.scan(ssmc.sigmoid(k), c, axis="L", reverse=True)
    return {"y": h * c}


@ssmc.layer
def conv_gated(x: In["B L D"], k: In["B L D"], w: Param["D K", "conv"], b: Param["D", "zeros"],
               win: In["B D K"] = None, h0: In["B D"] = None):
    """x read both through the conv and directly (a skip); the conv's window and the scan's state."""
    c = ssmc.conv(x, w, axis="L", window0=win)
    xc = ssmc.silu(c + b)
    h = ssmc.scan(ssmc.sigmoid(k), xc, axis="L", h0=h0)
    return {"y": h * xc + x, "window": c.final, "h_final": h.final}


LAYERS = {"causal_conv": causal_conv, "conv_reverse": conv_reverse, "conv_gated": conv_gated, "mamba2_conv": mamba2_conv}


def sizes_of(layer, B=2, L=7, D=5, K=4):
    s = {"B": B, "L": L, "D": D, "K": K, "G": 2, "R": 2, "P": 3, "N": 4}
    return {d: s[d] for d in layer.dim_order}


@pytest.mark.parametrize("K", [1, 2, 4, 8])
@pytest.mark.parametrize("L", [1, 3, 10])
def test_conv_is_pytorchs_causal_conv1d(K, L):
    """y = SiLU(conv1d(window[1:] ++ x) + bias), PyTorch's depthwise conv1d over the window
    then the steps; the final window is the last K of window ++ x."""
    rng = np.random.default_rng(K * 10 + L)
    B, D = 2, 3
    x, w, b = rng.standard_normal((B, L, D)), rng.standard_normal((D, K)), rng.standard_normal(D)
    for win in (None, rng.standard_normal((B, D, K))):
        out = causal_conv(x=x, weight=w, bias=b, window0=win)
        full = np.concatenate([np.zeros((B, D, K)) if win is None else win, x.transpose(0, 2, 1)], -1)
        ref = F.conv1d(torch.tensor(full[:, :, 1:]), torch.tensor(w)[:, None, :], torch.tensor(b), groups=D)
        np.testing.assert_allclose(out["y"], F.silu(ref).numpy().transpose(0, 2, 1), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(out["window"], full[:, :, -K:])


def test_two_calls_continue_each_other_in_the_interpreter():
    sizes = sizes_of(mamba2_conv, L=9, K=3)
    a = make_inputs(mamba2_conv, sizes, "f32", 3, with_optional=False)
    full = mamba2_conv(**a)
    seq = [k for k, s in mamba2_conv.specs.items() if s.kind == "input" and "L" in s.layout]
    first = mamba2_conv(**{k: (v[:, :2] if k in seq else v) for k, v in a.items()})
    state = {"h0": first["h_final"], "x_window": first["x_window"], "B_window": first["B_window"], "C_window": first["C_window"]}
    second = mamba2_conv(**{k: (v[:, 2:] if k in seq else v) for k, v in a.items()}, **state)
    np.testing.assert_allclose(np.concatenate([first["y"], second["y"]], 1), full["y"], rtol=1e-12, atol=1e-12)
    for k in ("h_final", "x_window", "B_window", "C_window"):
        np.testing.assert_allclose(second[k], full[k], rtol=1e-12, atol=1e-12)


@settings(max_examples=5)  # each example: eight matrix-form kernels and the rest in the interpreter
@given(L=st.integers(1, 13), K=st.sampled_from([1, 3, 4]), dtype=st.sampled_from(["f32", "bf16"]),
       with_optional=st.booleans(), seed=st.integers(0, 100))
def test_conv_in_the_matrix_form_backward(L, K, dtype, with_optional, seed):
    """Mamba-2 with its conv: the matrix form's backward (its matrix scans recompute the conv
    of B, C and x in their tiles, forward and reverse), the rest's conv derivatives."""
    key = "matrix_backward"
    if key not in _BWD:
        _BWD[key] = ssmc.compile(mamba2_conv, strategy="matrix", block_t=4).backward_compiled()
        _BWD[key].force = True
    c = _BWD[key]
    res = check_compiled(c.layer, c, sizes_of(mamba2_conv, L=L, K=K), dtype, seed, DEVICE, with_optional)
    assert all(r.ok for r in res), [str(r) for r in res if not r.ok]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_conv_derivatives_match_finite_differences(name):
    """The registry's derivative rules (conv_t, conv_final_t, conv_dw) against float64
    finite differences of the interpreter, for every argument (windows, weights, inputs)."""
    assert_matches_finite_differences(LAYERS[name], sizes_of(LAYERS[name], L=6, K=3))


_FWD: dict = {}
_BWD: dict = {}


@given(
    name=st.sampled_from(sorted(LAYERS)),
    strategy=st.sampled_from(["sequential", "tiled", "chunked", "matrix"]),
    L=st.integers(1, 19),
    K=st.sampled_from([1, 2, 3, 4, 8]),
    D=st.integers(1, 6),
    dtype=st.sampled_from(["f32", "bf16"]),
    with_optional=st.booleans(),
    noncontiguous=st.booleans(),
    seed=st.integers(0, 100),
)
def test_conv_kernels_match_the_interpreter(name, strategy, L, K, D, dtype, with_optional, noncontiguous, seed):
    if strategy == "matrix" and name != "mamba2_conv":  # the one with the matrix (tensor-core) form
        strategy = "chunked"
    key = (name, strategy)
    if key not in _FWD:
        _FWD[key] = ssmc.compile(LAYERS[name], strategy=strategy, chunks=3, block_t=4, unroll=2)
    layer = LAYERS[name]
    res = check_compiled(layer, _FWD[key], sizes_of(layer, L=L, D=D, K=K), dtype, seed, DEVICE, with_optional, noncontiguous)
    assert all(r.ok for r in res), [str(r) for r in res if not r.ok]


@given(
    name=st.sampled_from(sorted(LAYERS)),
    L=st.integers(1, 13),
    K=st.sampled_from([1, 2, 3, 4]),
    chunks=st.sampled_from([None, 2, 3]),
    deterministic=st.booleans(),
    with_optional=st.booleans(),
    seed=st.integers(0, 100),
)
def test_conv_backward_kernels_match_the_interpreter(name, L, K, chunks, deterministic, with_optional, seed):
    """The weights' gradient (a sum over time in the backward's loop), the input's (the
    transposed conv, in a later kernel reading the stored cotangent) and the window's; the
    kernels without a scan split the sequence among programs (``chunks``); in deterministic
    mode the weights' gradient is summed per program, then in a fixed order."""
    if name not in _BWD:
        _BWD[name] = CompiledBackward(LAYERS[name], sub=2, verify=True)
    c = _BWD[name]
    c.chunks, c.deterministic = chunks, deterministic
    res = check_compiled(c.layer, c, sizes_of(LAYERS[name], L=L, K=K), "f32", seed, DEVICE, with_optional)
    assert all(r.ok for r in res), [str(r) for r in res if not r.ok]


def test_fused_conv_equals_the_conv_kernel_then_the_scan():
    """Mamba-2 with the block's conv fused into the scan kernel equals the standalone conv
    kernel on x, B and C followed by Mamba-2's scan."""
    sizes = sizes_of(mamba2_conv, B=2, L=10, K=4)
    a = make_inputs(mamba2_conv, sizes, "f32", 5)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in a.items()}
    fused = ssmc.compile(mamba2_conv)(**t)
    conv = ssmc.compile(causal_conv)
    B_, L_ = sizes["B"], sizes["L"]

    def conv_of(v, w, bias, win):  # [B, L, ...] channels flattened into D
        out = conv(x=v.reshape(B_, L_, -1), weight=w.reshape(-1, w.shape[-1]), bias=bias.reshape(-1),
                   window0=win.reshape(B_, -1, win.shape[-1]))
        return out["y"].reshape(v.shape), out["window"].reshape(win.shape)

    xc, xw = conv_of(t["x"], t["conv_x"], t["conv_x_bias"], t["x_window"])
    Bc, Bw = conv_of(t["B"], t["conv_B"], t["conv_B_bias"], t["B_window"])
    Cc, Cw = conv_of(t["C"], t["conv_C"], t["conv_C_bias"], t["C_window"])
    plain = ssmc.compile(mamba2)(x=xc, B=Bc, C=Cc, dt=t["dt"], z=t["z"], A_log=t["A_log"], D=t["D"], dt_bias=t["dt_bias"], h0=t["h0"])
    torch.testing.assert_close(fused["y"], plain["y"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused["h_final"], plain["h_final"], rtol=1e-5, atol=1e-5)
    for got, want in ((fused["x_window"], xw), (fused["B_window"], Bw), (fused["C_window"], Cw)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def _sequences(layer):
    return [k for k, s in layer.specs.items() if s.kind == "input" and "L" in s.layout]


@pytest.mark.parametrize("name", ["causal_conv", "mamba2_conv"])
def test_prefill_steps_and_decoding_continue_the_window(name):
    layer = LAYERS[name]
    sizes = sizes_of(layer, L=9, K=3)
    m = ssmc.to_module(layer, sizes).to(DEVICE)
    seq = _sequences(layer)
    a = make_inputs(layer, sizes, "f32", 1, with_optional=False)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in a.items() if k in seq}
    names = m.state_names()
    assert set(names) >= {o for o, v in layer.graph.outputs if v.op == "conv_final"}
    with torch.no_grad():
        full = m(**t)
        for split in (1, 4, 8):
            o1 = m(**{k: v[:, :split] for k, v in t.items()})
            o2 = m(**{k: v[:, split:] for k, v in t.items()}, **{arg: o1[out] for out, arg in names.items()})
            torch.testing.assert_close(torch.cat([o1["y"], o2["y"]], 1), full["y"], rtol=1e-5, atol=1e-5)
            for out in names:
                torch.testing.assert_close(o2[out], full[out], rtol=1e-5, atol=1e-5)
        state, ys = None, []
        for i in range(sizes["L"]):
            y, state = m.step(state, **{k: v[:, i] for k, v in t.items()})
            ys.append(y["y"])
        torch.testing.assert_close(torch.stack(ys, 1), full["y"], rtol=1e-5, atol=1e-5)
        cache = m.new_cache(sizes["B"], device=DEVICE)
        ya = m.decode(cache, **{k: v[:, :3] for k, v in t.items()})["y"]
        yb = m.decode(cache, **{k: v[:, 3] for k, v in t.items()})["y"]
        yc = m.decode(cache, **{k: v[:, 4:] for k, v in t.items()})["y"]
        torch.testing.assert_close(torch.cat([ya, yb[:, None], yc], 1), full["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["causal_conv", "conv_gated", "mamba2_conv"])
def test_packed_batch_with_a_conv_equals_each_sequence_alone(name):
    """Nothing crosses a boundary: not the window (each sequence starts from its own), not its
    gradient; outputs, final windows and states, and every gradient per sequence."""
    layer = LAYERS[name]
    lengths = [3, 1, 6, 2]
    T = sum(lengths)
    sizes = sizes_of(layer, B=1, L=T, K=3)
    seq = _sequences(layer)
    c = ssmc.compile(layer)
    a = make_inputs(layer, sizes, "f32", 2, with_optional=False)
    rng = np.random.default_rng(0)
    states = {}
    for arg in [k for k, s in layer.specs.items() if s.kind == "input" and k not in seq]:
        shape = [len(lengths) if d == "B" else sizes[d] for d in layer.specs[arg].layout]
        states[arg] = rng.standard_normal(shape)

    def leaf(v):
        return torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True)

    packed = {k: leaf(v) for k, v in {**a, **states}.items()}
    cu = torch.tensor(np.cumsum([0] + lengths), dtype=torch.int32, device=DEVICE)
    out = c(**packed, cu_seqlens=cu)
    finals = [k for k, v in layer.graph.outputs if v.op in ("scan_final", "conv_final")]
    (out["y"].square().sum() + sum(out[k].sum() for k in finals)).backward()
    param_grads = {k: torch.zeros_like(packed[k]) for k in a if k not in seq}
    for i, n in enumerate(lengths):
        s0 = int(cu[i])
        one = {k: leaf(v[:, s0 : s0 + n] if k in seq else v) for k, v in a.items()}
        one.update({k: leaf(v[i : i + 1]) for k, v in states.items()})
        o = c(**one)
        torch.testing.assert_close(out["y"][:, s0 : s0 + n], o["y"], rtol=1e-5, atol=1e-5)
        for k in finals:
            torch.testing.assert_close(out[k][i], o[k][0], rtol=1e-5, atol=1e-5)
        (o["y"].square().sum() + sum(o[k].sum() for k in finals)).backward()
        for k in seq:
            torch.testing.assert_close(packed[k].grad[:, s0 : s0 + n], one[k].grad, rtol=1e-4, atol=1e-5, msg=k)
        for k in states:
            torch.testing.assert_close(packed[k].grad[i], one[k].grad[0], rtol=1e-4, atol=1e-5, msg=k)
        for k in param_grads:
            param_grads[k] += one[k].grad
    for k, g in param_grads.items():
        torch.testing.assert_close(packed[k].grad, g, rtol=1e-4, atol=1e-5, msg=k)


def test_conv_mistakes_are_said_in_the_layers_terms():
    with pytest.raises(DefinitionError, match="need exactly one dim the input"):
        @ssmc.layer
        def no_taps(x: In["B L D"], w: Param["D", "conv"]):
            return ssmc.conv(x, w, axis="L")

    with pytest.raises(DefinitionError, match="the input's dims are"):
        @ssmc.layer
        def wrong_axis(x: In["B L D"], w: Param["D K", "conv"]):
            return ssmc.conv(x, w, axis="T")

    with pytest.raises(DefinitionError, match="window"):
        @ssmc.layer
        def bad_window(x: In["B L D"], w: Param["D K", "conv"], win: In["B D"] = None):
            return ssmc.conv(x, w, axis="L", window0=win)

    with pytest.raises(DefinitionError, match="only defined on a scan's or a conv's result"):
        @ssmc.layer
        def final_of_sum(x: In["B L D"]):
            return (x + 1.0).final

    @ssmc.layer
    def conv_of_computed(x: In["B L D"], w: Param["D K", "conv"]):
        return ssmc.conv(ssmc.silu(x), w, axis="L")

    sizes = {"B": 1, "L": 4, "D": 2, "K": 3}
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in make_inputs(conv_of_computed, sizes, "f32").items()}
    with pytest.raises(LoweringError, match="reads %.* at other steps, and kernel k0 computes it"):
        ssmc.compile(conv_of_computed)(**t)


def test_a_window_of_the_wrong_shape_is_refused_before_any_kernel_runs():
    sizes = sizes_of(causal_conv, K=4)
    t = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE) for k, v in make_inputs(causal_conv, sizes, "f32").items()}
    c = ssmc.compile(causal_conv)
    with pytest.raises(ssmc.ArgumentError, match="window0"):
        c(**{**t, "window0": torch.zeros(2, 5, 3, device=DEVICE)})
